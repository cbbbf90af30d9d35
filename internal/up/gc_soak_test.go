package up_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/up"
)

// soakFor is how long the GC soak runs: $GEOREG_SOAK (make soak: 2m),
// else 6 s in make test.
func soakFor(t *testing.T) time.Duration {
	if s := os.Getenv("GEOREG_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("GEOREG_SOAK=%q: %v", s, err)
		}
		return d
	}
	return 6 * time.Second
}

// TestGCSoak: pushes in two regions, deletes that make garbage,
// replication, read-through pulls and whole-image pulls in every region
// keep running while every region collects garbage every 300 ms with a
// 1 s grace period. No pull of a kept image sees BLOB_UNKNOWN, and at the
// end every live manifest in every region has all its blobs.
func TestGCSoak(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), GCInterval: 300 * time.Millisecond, GCGrace: time.Second})
	dur := soakFor(t)
	deadline := time.Now().Add(dur)
	var kept sync.Map // "repo:tag" of images never deleted -> image
	var pushes, deletes, pulls, blobUnknown atomic.Int64
	var failures sync.Map
	fail := func(format string, args ...any) {
		failures.Store(fmt.Sprintf(format, args...), true)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	send := func(method, url, ctype string, body []byte) (int, []byte, http.Header, error) {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp.Header, nil
	}
	pushImage := func(base, repo, tag string, shared []byte, n int) (digest.Digest, error) {
		cfg := []byte(fmt.Sprintf(`{"tag":%q,"n":%d}`, tag, n))
		own := bytes.Repeat([]byte(tag+";"), 2000)
		var layers []string
		for _, b := range [][]byte{cfg, shared, own} {
			if n%2 == 0 { // as docker and crane do: check, and skip what is there
				if code, _, _, err := send(http.MethodHead, base+"/v2/"+repo+"/blobs/"+digest.FromBytes(b).String(), "", nil); err == nil && code == 200 {
					continue
				}
			}
			code, body, _, err := send(http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), "", b)
			if err != nil || code != 201 {
				return "", fmt.Errorf("blob: %d %s %v", code, body, err)
			}
		}
		for _, b := range [][]byte{shared, own} {
			layers = append(layers, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}`, digest.FromBytes(b), len(b)))
		}
		m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[%s,%s]}`,
			digest.FromBytes(cfg), len(cfg), layers[0], layers[1]))
		code, body, _, err := send(http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", m)
		if err != nil || code != 201 {
			return "", fmt.Errorf("manifest: %d %s %v", code, body, err)
		}
		return digest.FromBytes(m), nil
	}
	// pullWhole pulls repo:tag and every blob it names from base.
	pullWhole := func(base, repo, tag string) error {
		code, m, _, err := send(http.MethodGet, base+"/v2/"+repo+"/manifests/"+tag, "", nil)
		if err != nil || code != 200 {
			return fmt.Errorf("manifest %s:%s in %s: %d %v", repo, tag, base, code, err)
		}
		var parsed struct {
			Config struct{ Digest string }
			Layers []struct{ Digest string }
		}
		_ = json.Unmarshal(m, &parsed)
		ds := []string{parsed.Config.Digest}
		for _, l := range parsed.Layers {
			ds = append(ds, l.Digest)
		}
		for _, d := range ds {
			code, b, _, err := send(http.MethodGet, base+"/v2/"+repo+"/blobs/"+d, "", nil)
			if err != nil {
				return err
			}
			if code == 404 {
				blobUnknown.Add(1)
				return fmt.Errorf("BLOB_UNKNOWN: %s of %s:%s in %s", d, repo, tag, base)
			}
			if code != 200 || digest.FromBytes(b).String() != d {
				return fmt.Errorf("blob %s of %s:%s in %s: %d", d, repo, tag, base, code)
			}
		}
		return nil
	}
	shared := bytes.Repeat([]byte("shared base layer;"), 3000)
	var wg sync.WaitGroup
	for w, origin := range []string{"eastus", "westeurope"} {
		wg.Add(1)
		go func() { // pushes kept images, and churn images it deletes
			defer wg.Done()
			base := reg.ByName[origin].URL
			for i := 0; time.Now().Before(deadline) && i < 100_000; i++ {
				tag := fmt.Sprintf("w%d-%d", w, i)
				if i%3 == 0 {
					if _, err := pushImage(base, "soak/kept", tag, shared, i); err != nil {
						fail("push kept %s: %v", tag, err)
						continue
					}
					kept.Store(tag, true)
				} else {
					d, err := pushImage(base, "soak/churn", tag, shared, i)
					if err != nil {
						fail("push churn %s: %v", tag, err)
						continue
					}
					if code, body, _, err := send(http.MethodDelete, base+"/v2/soak/churn/manifests/"+d.String(), "", nil); err != nil || code != 202 {
						fail("delete %s: %d %s %v", tag, code, body, err)
					}
					deletes.Add(1)
				}
				pushes.Add(1)
			}
		}()
	}
	for _, r := range reg.Regions {
		wg.Add(1)
		go func() { // pulls kept images, whole, in its region (read-through when they have not arrived)
			defer wg.Done()
			for i := 0; time.Now().Before(deadline) && i < 1_000_000; i++ {
				var tags []string
				kept.Range(func(k, _ any) bool { tags = append(tags, k.(string)); return len(tags) < 500 })
				if len(tags) == 0 {
					time.Sleep(10 * time.Millisecond) // poll interval of a bounded wait: nothing pushed yet
					continue
				}
				if err := pullWhole(r.URL, "soak/kept", tags[rand.IntN(len(tags))]); err != nil {
					fail("%v", err)
				}
				pulls.Add(1)
			}
		}()
	}
	wg.Wait()
	// Every region converges, then every live manifest has all its blobs.
	var all []string
	kept.Range(func(k, _ any) bool { all = append(all, k.(string)); return true })
	for _, r := range reg.Regions {
		for _, tag := range all {
			eventually(t, 30*time.Second, func() error { return pullWhole(r.URL, "soak/kept", tag) })
		}
	}
	var gcs float64
	for _, r := range reg.Regions {
		gcs += metric(t, r.URL, "georeg_gc_runs_total", map[string]string{"outcome": "ok"})
		if n := metric(t, r.URL, "georeg_gc_runs_total", map[string]string{"outcome": "error"}); n > 0 {
			t.Errorf("%s: %v collections failed", r.Name, n)
		}
	}
	var freed float64
	for _, r := range reg.Regions {
		freed += metric(t, r.URL, "georeg_gc_freed_bytes_total", nil)
	}
	t.Logf("%s: %d pushes, %d deletes, %d whole pulls, %v collections, %.0f bytes freed, %d BLOB_UNKNOWN",
		dur, pushes.Load(), deletes.Load(), pulls.Load(), gcs, freed, blobUnknown.Load())
	failures.Range(func(k, _ any) bool { t.Error(k); return true })
	if blobUnknown.Load() != 0 {
		t.Fatalf("%d pulls saw BLOB_UNKNOWN", blobUnknown.Load())
	}
	if freed == 0 || gcs < 3 {
		t.Fatalf("the soak made no garbage collector work: %v runs, %v bytes freed", gcs, freed)
	}
}
