// Package bounded sends HTTP requests to other regions with no wait
// without a bound (DESIGN invariant 10): the response headers must arrive
// within a deadline, and the body must keep moving: a body from which no
// byte arrives for the idle timeout is cut with ErrStalled, however long
// the whole transfer may take (a 20 GiB layer is fine as long as it
// moves), and, for replication, a body must move a least number of bytes
// in each window (a peer that trickles a byte per idle period is cut
// too). A peer that hangs, a link that stops forwarding mid-body, a
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
	// MinProgress, above 0, is the fewest bytes the body must deliver in
	// each Window while it is read: a peer that trickles a byte just
	// inside every idle period is cut too. Replication sets it; the front
	// door does not (its reads follow the client's pace).
	MinProgress int64
	// Window is the period MinProgress counts over (default 4 x Idle).
	Window time.Duration
}

// PeerMinProgress is the least a replication transfer must move in each
// window of 4 idle timeouts (2 min by default): 64 KiB, about 550 bytes a
// second, far below any working link, far above a peer that trickles.
const PeerMinProgress = 64 << 10

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
	return answer(req, resp, err, &cut, cancel, lim)
}

// answer ends a bounded request's wait for headers: an error says which
// bound cut it (ErrStalled), a response gets a body with the idle-read
// deadline and the progress rule. cut holds why the request was cut, if
// it was.
func answer(req *http.Request, resp *http.Response, err error, cut *atomic.Value, cancel context.CancelFunc, lim Limits) (*http.Response, error) {
	if err != nil {
		cancel()
		if why, ok := cut.Load().(string); ok {
			return nil, fmt.Errorf("%s %s: %w: %s", req.Method, req.URL.Path, ErrStalled, why)
		}
		return nil, err
	}
	b := &body{rc: resp.Body, cancel: cancel, idle: lim.Idle, host: req.URL.Host}
	b.timer = time.AfterFunc(lim.Idle, func() { b.expire(fmt.Sprintf("no byte from %s for %s", b.host, b.idle)) })
	if lim.MinProgress > 0 {
		b.min, b.window = lim.MinProgress, lim.Window
		if b.window <= 0 {
			b.window = 4 * lim.Idle
		}
		b.progress = time.AfterFunc(b.window, b.checkProgress)
	}
	resp.Body = b
	return resp, nil
}

// body is a response body with an idle-read deadline and, with min set, a
// least progress per window.
type body struct {
	rc       io.ReadCloser
	cancel   context.CancelFunc
	idle     time.Duration
	host     string
	timer    *time.Timer
	min      int64
	window   time.Duration
	progress *time.Timer  // nil without a progress rule
	got      atomic.Int64 // bytes read in the current window
	ended    atomic.Bool  // the body ended (EOF or an error)
	why      atomic.Value // a string: the bound that cut it
	stalled  atomic.Bool
	once     sync.Once
}

// expire cuts the body for why.
func (b *body) expire(why string) {
	if b.ended.Load() {
		return
	}
	b.why.CompareAndSwap(nil, why)
	b.stalled.Store(true)
	b.cancel()
}

// checkProgress ends a window: too few bytes cut the body, else the next
// window starts.
func (b *body) checkProgress() {
	if b.ended.Load() {
		return
	}
	if n := b.got.Swap(0); n < b.min {
		b.expire(fmt.Sprintf("%d bytes from %s in %s, fewer than the %d a transfer must move", n, b.host, b.window, b.min))
		return
	}
	b.progress.Reset(b.window)
}

// Read implements io.Reader: every byte that arrives moves the deadline.
func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && !b.stalled.Load() {
		b.timer.Reset(b.idle)
		b.got.Add(int64(n))
	}
	if err != nil {
		if b.stalled.Load() && err != io.EOF {
			return n, fmt.Errorf("%w: %s", ErrStalled, b.why.Load())
		}
		b.ended.Store(true)
	}
	return n, err
}

// Close implements io.Closer.
func (b *body) Close() error {
	b.once.Do(func() {
		b.ended.Store(true)
		b.timer.Stop()
		if b.progress != nil {
			b.progress.Stop()
		}
	})
	err := b.rc.Close()
	b.cancel()
	return err
}
