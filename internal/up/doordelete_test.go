package up_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/up"
)

// TestADeleteThroughTheDoorIsSeenByTheNextRead: once georeg up reports
// every region Ready, clients push, read, delete and read again through
// the front door, many at once, as the conformance suite does once per
// case: the read after an acknowledged delete answers 404 every time, with
// the same blob content in every repository and pushed again into a
// repository it was deleted from. (Reported Ready before the door had
// seen it so, 2 runs in 10 under load had reads served by another region,
// a HEAD after a DELETE answered 200: the conformance suite's failure
// through the door in a clean-clone run of 2026-12-07.)
func TestADeleteThroughTheDoorIsSeenByTheNextRead(t *testing.T) {
	// runRegistry returns once every region is reported Ready (seen so by
	// the door), as georeg up's user waits for its lines.
	door := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), FrontDoor: "127.0.0.1:0"}).FrontDoor
	shared := []byte("{}")
	sd := digest.FromBytes(shared)
	const workers, cycles = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*cycles*4)
	for w := range workers {
		wg.Go(func() {
			// No t.Fatal off the test's goroutine: each step reports
			// what went wrong and the cycle goes on or ends.
			step := func(c int, repo, what, method, url, contentType string, body []byte, want int) bool {
				code, region, got, err := request(method, url, contentType, body)
				if err == nil && code != want {
					err = fmt.Errorf("answered %d by %s: %s", code, region, got)
				}
				if err != nil {
					errs <- fmt.Errorf("%s cycle %d: %s: %w", repo, c, what, err)
				}
				return err == nil
			}
			for c := range cycles {
				repo := fmt.Sprintf("doordelete/w%d/r%d", w, c%4) // each repository again every fourth cycle
				blob := door + "/v2/" + repo + "/blobs/" + sd.String()
				if !step(c, repo, "blob push", "POST", door+"/v2/"+repo+"/blobs/uploads/?digest="+sd.String(), "", shared, http.StatusCreated) ||
					!step(c, repo, "HEAD after push", "HEAD", blob, "", nil, http.StatusOK) ||
					!step(c, repo, "GET after push", "GET", blob, "", nil, http.StatusOK) ||
					!step(c, repo, "DELETE", "DELETE", blob, "", nil, http.StatusAccepted) ||
					!step(c, repo, "HEAD after DELETE", "HEAD", blob, "", nil, http.StatusNotFound) {
					continue
				}
				// An image whose config is the shared blob, pushed again
				// into a repository it was deleted from three cycles before.
				layer := []byte(fmt.Sprintf("layer of w%d c%d", w, c%3))
				m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
					sd, len(shared), digest.FromBytes(layer), len(layer)))
				ref := door + "/v2/" + repo + "/manifests/" + digest.FromBytes(m).String()
				_ = step(c, repo, "config push", "POST", door+"/v2/"+repo+"/blobs/uploads/?digest="+sd.String(), "", shared, http.StatusCreated) &&
					step(c, repo, "layer push", "POST", door+"/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(layer).String(), "", layer, http.StatusCreated) &&
					step(c, repo, "manifest push", "PUT", ref, "application/vnd.oci.image.manifest.v1+json", m, http.StatusCreated) &&
					step(c, repo, "manifest HEAD after push", "HEAD", ref, "", nil, http.StatusOK) &&
					step(c, repo, "manifest DELETE", "DELETE", ref, "", nil, http.StatusAccepted) &&
					step(c, repo, "manifest HEAD after DELETE", "HEAD", ref, "", nil, http.StatusNotFound)
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 20 {
			t.Error(err)
		}
	}
	if n > 20 {
		t.Errorf("... %d failures in all", n)
	}
}

// TestARegionIsReportedReadyOnceTheDoorSendsItsClientsThere: at the
// moment georeg up reports a region Ready, a client at that region's
// location (127.0.0.1 eastus, .2 westeurope, .3 southeastasia) is
// answered by that region through the front door.
func TestARegionIsReportedReadyOnceTheDoorSendsItsClientsThere(t *testing.T) {
	// runLogged, not runRegistry: what is checked is the moment of each
	// report, not a time after all of them.
	reg := runLogged(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), FrontDoor: "127.0.0.1:0"}, io.Discard)
	from := map[string]string{"eastus": "127.0.0.1", "westeurope": "127.0.0.2", "southeastasia": "127.0.0.3"}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var reported []string
	reg.AwaitReady(ctx, func(name string) {
		reported = append(reported, name)
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from[name])}}).DialContext}}
		defer client.CloseIdleConnections()
		resp, err := client.Get(reg.FrontDoor + "/v2/")
		if err != nil {
			t.Errorf("%s reported Ready: GET /v2/ from %s: %v", name, from[name], err)
			return
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Georeg-Region"); got != name {
			t.Errorf("%s reported Ready, yet the door sent a client from %s to %q", name, from[name], got)
		}
	})
	if len(reported) != 3 {
		t.Fatalf("reported Ready within 30 s: %v", reported)
	}
}

// request sends one request (bounded: 30 s) and returns the status, the
// region the front door named and the body.
func request(method, url, contentType string, body []byte) (int, string, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Georeg-Region"), data, err
}
