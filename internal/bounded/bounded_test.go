package bounded

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
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
