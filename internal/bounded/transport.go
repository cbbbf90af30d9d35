package bounded

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Transport is an http.RoundTripper that bounds every request it carries
// (the front door's requests to regions): the response headers must
// arrive within Limits(req).Header counted from when the request body has
// been sent (a slow upload is the client's pace, not a hung region), the
// request body must keep being taken (a region that stops reading it for
// Idle is hung), and the response body is cut after Idle without a byte.
// A request cut for its headers fails with ErrStalled before anything was
// answered, so the caller may send a read elsewhere.
type Transport struct {
	Base   http.RoundTripper
	Limits func(*http.Request) Limits
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	lim := t.Limits(req)
	ctx, cancel := context.WithCancel(req.Context())
	var cut atomic.Value // why the request was cut: a string
	var answered atomic.Bool
	stop := func(why string) {
		if !answered.Load() && cut.CompareAndSwap(nil, why) {
			cancel()
		}
	}
	headers := time.AfterFunc(lim.Header, func() {
		stop(fmt.Sprintf("no response headers from %s within %s of the request", req.URL.Host, lim.Header))
	})
	headers.Stop() // armed once the body is sent
	out := req.WithContext(ctx)
	if req.Body == nil || req.Body == http.NoBody {
		headers.Reset(lim.Header)
	} else {
		sent := &sending{rc: req.Body, idle: lim.Idle, sent: func() { headers.Reset(lim.Header) }}
		sent.timer = time.AfterFunc(lim.Idle, func() {
			stop(fmt.Sprintf("%s took no request byte for %s", req.URL.Host, lim.Idle))
		})
		sent.timer.Stop()
		out.Body = sent
		defer sent.timer.Stop()
	}
	resp, err := t.Base.RoundTrip(out)
	answered.Store(true)
	headers.Stop()
	return answer(req, resp, err, &cut, cancel, lim)
}

// sending is a request body on its way to the server: between two reads
// (while the transport writes what it read) the idle timer runs, so a
// server that stops taking bytes is caught, while a client that sends
// slowly (time spent inside Read) is not; at EOF sent arms the header
// deadline.
type sending struct {
	rc    io.ReadCloser
	idle  time.Duration
	timer *time.Timer
	sent  func()
	once  sync.Once
}

func (s *sending) Read(p []byte) (int, error) {
	s.timer.Stop()
	n, err := s.rc.Read(p)
	if err == io.EOF {
		s.once.Do(s.sent)
		return n, err
	}
	if err == nil {
		s.timer.Reset(s.idle)
	}
	return n, err
}

func (s *sending) Close() error {
	s.timer.Stop()
	s.once.Do(s.sent)
	return s.rc.Close()
}
