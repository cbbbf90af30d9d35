package ociapi_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/ociapi"
	"github.com/georeg/georeg/internal/region"
)

// TestUploadsInFlightAreCappedPerNode: with two uploads streaming into a
// node that takes two, a third is refused 429 with Retry-After before a
// byte is read; once one ends, the next is taken.
func TestUploadsInFlightAreCappedPerNode(t *testing.T) {
	r, err := region.Open(t.Context(), region.Config{Name: "eastus", DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ociapi.New(r, slog.New(slog.DiscardHandler), ociapi.Options{MaxUploads: 2}).Handler(nil))
	t.Cleanup(func() { srv.Close(); r.Close() })
	start := func() string {
		resp, err := http.Post(srv.URL+"/v2/app/blobs/uploads/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Location")
	}
	// Two PATCHes whose bodies keep coming.
	var writers []*io.PipeWriter
	done := make(chan int, 2)
	for range 2 {
		loc := start()
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		req, _ := http.NewRequest(http.MethodPatch, srv.URL+loc, pr)
		req.Header.Set("Content-Type", "application/octet-stream")
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		// More than loopback's socket buffers hold: when the write
		// returns, the handler has read most of it, so its upload is in
		// flight (a few bytes could sit in the client's and the kernel's
		// buffers before the handler ran: the third PATCH then raced it).
		if _, err := pw.Write(make([]byte, 32<<20)); err != nil {
			t.Fatal(err)
		}
	}
	third := start()
	resp, err := http.DefaultClient.Do(mustPatch(t, srv.URL+third, "more"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "TOOMANYREQUESTS") {
		t.Fatalf("a third upload in flight: %d %s %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	writers[0].Close()
	if code := <-done; code != http.StatusAccepted {
		t.Fatalf("the first PATCH: %d", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.DefaultClient.Do(mustPatch(t, srv.URL+third, "more"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the third upload after one ended: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
	writers[1].Close()
	<-done
}

func mustPatch(t *testing.T, url, body string) *http.Request {
	req, err := http.NewRequest(http.MethodPatch, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	return req
}
