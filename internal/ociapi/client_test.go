package ociapi_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/ociapi"
	"github.com/georeg/georeg/internal/region"
)

// syncLog is a log sink the server's goroutines write.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// clientServer is a region whose request log the test reads, with a
// short body idle bound.
func clientServer(t *testing.T, idle time.Duration) (*testRegion, *syncLog, string) {
	t.Helper()
	dir := t.TempDir()
	var logs syncLog
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r, err := region.Open(t.Context(), region.Config{Name: "eastus", DataDir: dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ociapi.New(r, log, ociapi.Options{BodyIdle: idle}).Handler(nil))
	t.Cleanup(func() { srv.Close(); r.Close() })
	return &testRegion{t: t, url: srv.URL, dir: dir, region: r}, &logs, strings.TrimPrefix(srv.URL, "http://")
}

// startUpload opens an upload session and returns its path.
func startUpload(t *testing.T, tr *testRegion) string {
	t.Helper()
	resp := tr.do("POST", "/v2/app/blobs/uploads/", nil, nil)
	if resp.status != 202 {
		t.Fatalf("POST: %d %s", resp.status, resp.body)
	}
	return resp.header.Get("Location")
}

// logLine waits for the request log line of method and returns it.
func logLine(t *testing.T, logs *syncLog, method string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "msg=request") && strings.Contains(line, "method="+method) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request log line for %s in:\n%s", method, logs.String())
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a bounded wait
	}
}

// TestAClientThatGoesAwayIsNotAServerError: a PATCH whose client closes
// the connection after 3 of 100 bytes is logged as 499 at INFO, not as a
// 500 error.
func TestAClientThatGoesAwayIsNotAServerError(t *testing.T) {
	tr, logs, addr := clientServer(t, time.Minute)
	loc := startUpload(t, tr)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "PATCH %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\nabc", loc, addr)
	time.Sleep(100 * time.Millisecond) // let the server read the 3 bytes; the close must come mid-body
	c.Close()
	line := logLine(t, logs, "PATCH")
	if !strings.Contains(line, "status=499") || !strings.Contains(line, "level=INFO") || !strings.Contains(line, "client_gone=") {
		t.Fatalf("a client gone mid-body is logged as %q, want status=499 at INFO with client_gone", line)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("an error was logged:\n%s", logs.String())
	}
}

// TestABodyThatStopsArrivingIsCut: a PATCH that sends 3 of 100 bytes
// and then nothing is answered 408 REQUEST_TIMEOUT after the idle bound,
// and the session is as before it (a chunk is kept whole or not at all).
func TestABodyThatStopsArrivingIsCut(t *testing.T) {
	tr, _, addr := clientServer(t, 200*time.Millisecond)
	loc := startUpload(t, tr)
	before := tr.do("GET", loc, nil, nil).header.Get("Range")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // a hang fails the test
	fmt.Fprintf(c, "PATCH %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\nabc", loc, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 408 || !strings.Contains(string(body), "REQUEST_TIMEOUT") {
		t.Fatalf("stalled body: %d %s, want 408 REQUEST_TIMEOUT", resp.StatusCode, body)
	}
	if st := tr.do("GET", loc, nil, nil); st.status != 204 || st.header.Get("Range") != before {
		t.Fatalf("the session after a cut body: %d, Range %q; want 204 and the session as before the PATCH (%q)", st.status, st.header.Get("Range"), before)
	}
}

// TestASlowClientThatKeepsSendingIsNotCut: 10 bytes, one every 50 ms,
// take longer than the 200 ms idle bound in all; every byte moves it.
func TestASlowClientThatKeepsSendingIsNotCut(t *testing.T) {
	tr, _, _ := clientServer(t, 200*time.Millisecond)
	loc := startUpload(t, tr)
	pr, pw := io.Pipe()
	go func() {
		for range 10 {
			time.Sleep(50 * time.Millisecond) // the client's pace
			_, _ = pw.Write([]byte("x"))
		}
		pw.Close()
	}()
	req, _ := http.NewRequestWithContext(t.Context(), "PATCH", tr.url+loc, pr)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 || resp.Header.Get("Range") != "0-9" {
		t.Fatalf("slow PATCH: %d, Range %q; want 202, 0-9", resp.StatusCode, resp.Header.Get("Range"))
	}
}

// TestAManifestMissingThousandsOfBlobsGetsASmallAnswer: 20,001 missing
// layers are counted, and the answer names only the first of them.
func TestAManifestMissingThousandsOfBlobsGetsASmallAnswer(t *testing.T) {
	tr := newTestRegion(t, func(c *region.Config) { c.MaxManifestSize = 4 << 20 })
	var layers []string
	for i := range 20_001 {
		layers = append(layers, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":1}`, digest.FromString(fmt.Sprint(i))))
	}
	cfg := tr.pushBlob("app", []byte("{}"))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[%s]}`, cfg, strings.Join(layers, ","))
	resp := tr.do("PUT", "/v2/app/manifests/big", ct("application/vnd.oci.image.manifest.v1+json"), []byte(m))
	if resp.status != 400 || resp.code() != "MANIFEST_BLOB_UNKNOWN" {
		t.Fatalf("PUT: %d %s", resp.status, resp.code())
	}
	if len(resp.body) > 16<<10 || !strings.Contains(string(resp.body), `"count":20001`) || !strings.Contains(string(resp.body), "20001 blob(s)") {
		t.Fatalf("answer of %d bytes, want under 16 KiB with the count 20001: %.300s", len(resp.body), resp.body)
	}
}
