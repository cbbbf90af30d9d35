package bounded

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server answers /stall-headers never, /stall-body with 3 bytes and then
// nothing, and /trickle with a byte every 20 ms for 300 ms; release ends
// the held handlers.
func server(t *testing.T) (*httptest.Server, chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stall-headers":
			<-release
		case "/stall-body":
			_, _ = w.Write([]byte("abc"))
			w.(http.Flusher).Flush()
			<-release
		case "/trickle":
			for range 40 {
				_, _ = w.Write([]byte("x"))
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond) // the pace a slow but moving body has
			}
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv, release
}

func get(t *testing.T, url string, lim Limits) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // a hang fails the test, not the run
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := Do(http.DefaultClient, req, lim)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func TestAPeerThatSendsNoHeadersIsCut(t *testing.T) {
	srv, _ := server(t)
	_, err := get(t, srv.URL+"/stall-headers", Limits{Header: 100 * time.Millisecond, Idle: time.Minute})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("got %v, want ErrStalled", err)
	}
}

func TestABodyThatStopsMidwayIsCutWithWhatArrived(t *testing.T) {
	srv, _ := server(t)
	got, err := get(t, srv.URL+"/stall-body", Limits{Header: time.Minute, Idle: 100 * time.Millisecond})
	if !errors.Is(err, ErrStalled) || string(got) != "abc" {
		t.Fatalf("got %q, %v; want abc then ErrStalled", got, err)
	}
}

// TestABodyThatKeepsMovingIsNotCut: the whole body takes 800 ms, more
// than twice the idle bound, but a byte arrives every 20 ms.
func TestABodyThatKeepsMovingIsNotCut(t *testing.T) {
	srv, _ := server(t)
	got, err := get(t, srv.URL+"/trickle", Limits{Header: time.Minute, Idle: 300 * time.Millisecond})
	if err != nil || len(got) != 40 {
		t.Fatalf("got %d bytes, %v; want 40 and no error", len(got), err)
	}
}

// TestABodyThatTricklesBelowTheLeastProgressIsCut: a byte every 20 ms
// never trips the idle bound, but 40 bytes in 800 ms is below a least
// progress of 20 bytes per 200 ms window; the same body meets a rule of
// 2 bytes per window and is read whole.
func TestABodyThatTricklesBelowTheLeastProgressIsCut(t *testing.T) {
	srv, _ := server(t)
	got, err := get(t, srv.URL+"/trickle", Limits{Header: time.Minute, Idle: 300 * time.Millisecond, MinProgress: 20, Window: 200 * time.Millisecond})
	if !errors.Is(err, ErrStalled) || len(got) >= 40 || !strings.Contains(err.Error(), "fewer than the 20") {
		t.Fatalf("got %d bytes, %v; want it cut for too little progress", len(got), err)
	}
	got, err = get(t, srv.URL+"/trickle", Limits{Header: time.Minute, Idle: 300 * time.Millisecond, MinProgress: 2, Window: 200 * time.Millisecond})
	if err != nil || len(got) != 40 {
		t.Fatalf("got %d bytes, %v; want 40 and no error", len(got), err)
	}
}

// slowBody yields one byte per pause, n times: a client uploading slowly.
type slowBody struct {
	n     int
	pause time.Duration
}

func (s *slowBody) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause) // the client's own pace
	s.n--
	p[0] = 'x'
	return 1, nil
}

func (s *slowBody) Close() error { return nil }

// doorServer answers /hang after reading the body never, /stop-reading
// stops reading the body after 1 KiB, /echo answers the body's length.
func doorServer(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			_, _ = io.Copy(io.Discard, r.Body)
			<-release
		case "/stop-reading":
			_, _ = io.CopyN(io.Discard, r.Body, 1024)
			<-release
		case "/echo":
			n, _ := io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv
}

func roundTrip(t *testing.T, method, url string, body io.ReadCloser, lim Limits) (string, error) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // a hang fails the test, not the run
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, url, body)
	resp, err := (&Transport{Base: tr, Limits: func(*http.Request) Limits { return lim }}).RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestTransportCutsARegionThatTakesTheBodyAndNeverAnswers(t *testing.T) {
	srv := doorServer(t)
	_, err := roundTrip(t, "PUT", srv.URL+"/hang", io.NopCloser(strings.NewReader("abc")), Limits{Header: 100 * time.Millisecond, Idle: time.Minute})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("got %v, want ErrStalled", err)
	}
}

func TestTransportCutsARegionThatStopsTakingTheBody(t *testing.T) {
	srv := doorServer(t)
	big := io.NopCloser(bytes.NewReader(make([]byte, 64<<20))) // more than socket buffers hold
	_, err := roundTrip(t, "PUT", srv.URL+"/stop-reading", big, Limits{Header: time.Minute, Idle: 200 * time.Millisecond})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("got %v, want ErrStalled", err)
	}
}

// TestTransportWaitsForASlowClient: the client's body takes 10 × 50 ms,
// longer than both bounds; the time is spent in the client, so nothing is cut.
func TestTransportWaitsForASlowClient(t *testing.T) {
	srv := doorServer(t)
	got, err := roundTrip(t, "PUT", srv.URL+"/echo", &slowBody{n: 10, pause: 50 * time.Millisecond}, Limits{Header: 100 * time.Millisecond, Idle: 100 * time.Millisecond})
	if err != nil || got != "10" {
		t.Fatalf("got %q, %v; want 10 and no error", got, err)
	}
}

func TestTransportCutsAGETWithoutHeaders(t *testing.T) {
	srv, _ := server(t)
	_, err := roundTrip(t, "GET", srv.URL+"/stall-headers", nil, Limits{Header: 100 * time.Millisecond, Idle: time.Minute})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("got %v, want ErrStalled", err)
	}
	got, err := roundTrip(t, "GET", srv.URL+"/stall-body", nil, Limits{Header: time.Minute, Idle: 100 * time.Millisecond})
	if !errors.Is(err, ErrStalled) || got != "abc" {
		t.Fatalf("got %q, %v; want abc then ErrStalled", got, err)
	}
}
