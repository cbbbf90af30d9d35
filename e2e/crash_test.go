package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func httpDo(t *testing.T, method, url string, header map[string]string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func status(t *testing.T, method, url string, header map[string]string, body []byte) (int, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	resp := httpDo(t, method, url, header, rd)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestInvariant8AcknowledgedPushSurvivesKill9 pushes images and kills the
// node with SIGKILL the moment the manifest PUT returns 201; after a
// restart every acknowledged image pulls with the same digest and bytes.
func TestInvariant8AcknowledgedPushSurvivesKill9(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	for round := range 3 {
		base := "http://" + s.addr + "/v2/crash/app"
		layer := make([]byte, 256<<10)
		_, _ = rand.Read(layer)
		cfg := []byte(fmt.Sprintf(`{"round":%d}`, round))
		for _, b := range [][]byte{layer, cfg} {
			if code, _ := status(t, "POST", base+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), nil, b); code != 201 {
				t.Fatalf("blob push: %d", code)
			}
		}
		m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
			digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer)))
		tag := fmt.Sprintf("r%d", round)
		code, h := status(t, "PUT", base+"/manifests/"+tag, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, m)
		s.kill9() // the instant the 201 arrived
		if code != 201 {
			t.Fatalf("manifest push: %d", code)
		}
		s.start()
		resp := httpDo(t, "GET", base+"/manifests/"+tag, nil, nil)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, m) || resp.Header.Get("Docker-Content-Digest") != h.Get("Docker-Content-Digest") {
			t.Fatalf("round %d after kill -9: %d, digest %s want %s", round, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), h.Get("Docker-Content-Digest"))
		}
		resp = httpDo(t, "GET", base+"/blobs/"+digest.FromBytes(layer).String(), nil, nil)
		gotLayer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if digest.FromBytes(gotLayer) != digest.FromBytes(layer) {
			t.Fatalf("round %d: layer bytes differ after kill -9", round)
		}
	}
}

// slowReader hands out data in small pieces, signals once half of it has
// been read, and then holds the request open until resume is closed, so
// the test kills the server mid-request.
type slowReader struct {
	data   []byte
	off    int
	half   chan struct{}
	resume chan struct{}
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	if r.off >= len(r.data)/2 && r.half != nil {
		close(r.half)
		r.half = nil
		<-r.resume
	}
	n := copy(p[:min(len(p), 64<<10)], r.data[r.off:])
	r.off += n
	return n, nil
}

// TestKill9DuringUploadLeavesNothingVisible kills the node in the middle
// of a chunk. After a restart the blob is not visible, and the session
// either resumes from the Range it reports or is gone so the client
// restarts; both end in the right blob.
func TestKill9DuringUploadLeavesNothingVisible(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	base := "http://" + s.addr + "/v2/crash/up"
	blob := make([]byte, 8<<20)
	_, _ = rand.Read(blob)
	d := digest.FromBytes(blob)

	code, h := status(t, "POST", base+"/blobs/uploads/", nil, nil)
	if code != 202 {
		t.Fatalf("start: %d", code)
	}
	loc := "http://" + s.addr + h.Get("Location")
	if code, _ := status(t, "PATCH", loc, map[string]string{"Content-Range": "0-1048575"}, blob[:1<<20]); code != 202 {
		t.Fatalf("chunk 1: %d", code)
	}
	half, resume := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("PATCH", loc, &slowReader{data: blob[1<<20:], half: half, resume: resume})
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		errc <- err
	}()
	select {
	case <-half:
	case <-time.After(30 * time.Second):
		t.Fatal("chunk never got halfway")
	}
	s.kill9()
	close(resume)
	<-errc // the client's request fails with the connection
	s.start()
	base = "http://" + s.addr + "/v2/crash/up"
	loc = "http://" + s.addr + h.Get("Location")

	if code, _ := status(t, "HEAD", base+"/blobs/"+d.String(), nil, nil); code != 404 {
		t.Fatalf("blob visible after a crash mid-upload: %d", code)
	}
	code, sh := status(t, "GET", loc, nil, nil)
	switch code {
	case 204: // resume from what the session holds
		var end int64
		if _, err := fmt.Sscanf(sh.Get("Range"), "0-%d", &end); err != nil {
			t.Fatalf("Range %q: %v", sh.Get("Range"), err)
		}
		next := end + 1
		if next < 1<<20 {
			t.Fatalf("session lost acknowledged chunk: Range %s", sh.Get("Range"))
		}
		cr := fmt.Sprintf("%d-%d", next, len(blob)-1)
		if code, _ := status(t, "PATCH", loc, map[string]string{"Content-Range": cr}, blob[next:]); code != 202 {
			t.Fatalf("resume chunk: %d", code)
		}
		if code, _ := status(t, "PUT", loc+"?digest="+d.String(), nil, nil); code != 201 {
			t.Fatalf("close after resume: %d", code)
		}
	case 404: // restart cleanly
		if code, _ := status(t, "POST", base+"/blobs/uploads/?digest="+d.String(), nil, blob); code != 201 {
			t.Fatalf("restart upload: %d", code)
		}
	default:
		t.Fatalf("upload status after crash: %d", code)
	}
	resp := httpDo(t, "GET", base+"/blobs/"+d.String(), nil, nil)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if digest.FromBytes(got) != d {
		t.Fatal("blob after crash and resume has the wrong bytes")
	}
	if !strings.HasPrefix(h.Get("Location"), "/v2/crash/up/blobs/uploads/eastus.") {
		t.Fatalf("session id does not name its region: %s", h.Get("Location"))
	}
}
