// Package bounded sends HTTP requests to other regions with no wait
// without a bound (DESIGN invariant 10): the response headers must arrive
// within a deadline, and the body must keep moving: a body from which no
// byte arrives for the idle timeout is cut with ErrStalled, however long
// the whole transfer may take (a 20 GiB layer is fine as long as it
// moves). A peer that hangs, a link that stops forwarding mid-body, a
// half-dead TCP path all end a request within these bounds instead of
// holding it forever.
package bounded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStalled wraps the error of a request cut because nothing arrived
// within its bound.
var ErrStalled = errors.New("stalled")

// Limits bound one request.
type Limits struct {
	// Header is how long the response headers may take (a feed long-poll
	// passes its wait plus a margin).
	Header time.Duration
	// Idle is how long the body may go without a byte.
	Idle time.Duration
}

// Do sends req over hc within lim. The response's body, when Do returns
// one, is cut with ErrStalled after lim.Idle without a byte; closing it
// releases everything. req's context still cancels it at any time.
func Do(hc *http.Client, req *http.Request, lim Limits) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	var cut atomic.Value // the bound that cut the request: a string
	headers := time.AfterFunc(lim.Header, func() {
		cut.Store(fmt.Sprintf("no response headers from %s within %s", req.URL.Host, lim.Header))
		cancel()
	})
	resp, err := hc.Do(req.WithContext(ctx))
	headers.Stop()
	return answer(req, resp, err, &cut, cancel, lim.Idle)
}

// answer ends a bounded request's wait for headers: an error says which
// bound cut it (ErrStalled), a response gets a body with the idle-read
// deadline. cut holds why the request was cut, if it was.
func answer(req *http.Request, resp *http.Response, err error, cut *atomic.Value, cancel context.CancelFunc, idle time.Duration) (*http.Response, error) {
	if err != nil {
		cancel()
		if why, ok := cut.Load().(string); ok {
			return nil, fmt.Errorf("%s %s: %w: %s", req.Method, req.URL.Path, ErrStalled, why)
		}
		return nil, err
	}
	b := &body{rc: resp.Body, cancel: cancel, idle: idle, host: req.URL.Host}
	b.timer = time.AfterFunc(idle, b.expire)
	resp.Body = b
	return resp, nil
}

// body is a response body with an idle-read deadline.
type body struct {
	rc      io.ReadCloser
	cancel  context.CancelFunc
	idle    time.Duration
	host    string
	timer   *time.Timer
	stalled atomic.Bool
	once    sync.Once
}

func (b *body) expire() {
	b.stalled.Store(true)
	b.cancel()
}

// Read implements io.Reader: every byte that arrives moves the deadline.
func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && !b.stalled.Load() {
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF && b.stalled.Load() {
		return n, fmt.Errorf("%w: no byte from %s for %s", ErrStalled, b.host, b.idle)
	}
	return n, err
}

// Close implements io.Closer.
func (b *body) Close() error {
	b.once.Do(func() { b.timer.Stop() })
	err := b.rc.Close()
	b.cancel()
	return err
}
