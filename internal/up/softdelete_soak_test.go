package up_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/up"
)

// TestSoftDeleteSoak: with soft delete and retention of untagged manifests
// (0 days) on, two regions push images, leave some untagged (retention
// deletes them) and delete others; a restorer in each region restores
// what its region lists; every region collects garbage every 300 ms with
// a 1 s grace. Verifying pullers see no BLOB_UNKNOWN in any region for a
// live image, nor for a blob of a manifest listed restorable. Then soft
// delete and retention are turned off, and once collected every region
// stores exactly the blobs its live manifests reference: nothing is kept
// after the purge. Runs as long as TestGCSoak (make soak: 2 min).
func TestSoftDeleteSoak(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), GCInterval: 300 * time.Millisecond, GCGrace: time.Second,
		RetentionInterval: 500 * time.Millisecond})
	east := reg.ByName["eastus"].URL
	softDeleteOn(t, reg, east)
	if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/policies/retention", "application/json", []byte(`{"status":"enabled","days":0,"type":"UntaggedManifests"}`)); code != 200 {
		t.Fatalf("retention: %d %s", code, out)
	}
	dur := soakFor(t)
	deadline := time.Now().Add(dur)
	var live sync.Map   // tag -> true: images pushed by tag and never deleted, or restored
	var pushed sync.Map // manifest digest -> its blobs' digests
	var pushes, deletes, restores, pulls, blobUnknown, heldChecks atomic.Int64
	var maxHeld atomic.Int64
	var failures sync.Map
	fail := func(format string, args ...any) { failures.Store(fmt.Sprintf(format, args...), true) }
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	send := func(method, url, ctype string, body []byte) (int, []byte, error) {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, nil
	}
	shared := bytes.Repeat([]byte("soft shared base;"), 3000)
	pushImage := func(base, ref string, n int) (digest.Digest, error) {
		cfg := []byte(fmt.Sprintf(`{"soft":%d,"ref":%q}`, n, ref))
		own := bytes.Repeat([]byte(fmt.Sprintf("own %d;", n)), 1500)
		for _, b := range [][]byte{cfg, shared, own} {
			if code, body, err := send(http.MethodPost, base+"/v2/soft/app/blobs/uploads/?digest="+digest.FromBytes(b).String(), "", b); err != nil || code != 201 {
				return "", fmt.Errorf("blob: %d %s %v", code, body, err)
			}
		}
		m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
			digest.FromBytes(cfg), len(cfg), digest.FromBytes(shared), len(shared), digest.FromBytes(own), len(own)))
		if ref == "" {
			ref = digest.FromBytes(m).String()
		}
		pushed.Store(digest.FromBytes(m), []digest.Digest{digest.FromBytes(cfg), digest.FromBytes(shared), digest.FromBytes(own)})
		if code, body, err := send(http.MethodPut, base+"/v2/soft/app/manifests/"+ref, "application/vnd.oci.image.manifest.v1+json", m); err != nil || code != 201 {
			return "", fmt.Errorf("manifest: %d %s %v", code, body, err)
		}
		return digest.FromBytes(m), nil
	}
	// blobsOf fetches manifest ref from base and its blobs' digests.
	blobsOf := func(base, ref string, asPeer bool) ([]oci.Descriptor, int, error) {
		var code int
		var m []byte
		if asPeer {
			code, m = asPeerWith(t, reg.Secret, http.MethodGet, base+"/v2/soft/app/manifests/"+ref)
		} else {
			var err error
			if code, m, err = send(http.MethodGet, base+"/v2/soft/app/manifests/"+ref, "", nil); err != nil {
				return nil, 0, err
			}
		}
		if code != 200 {
			return nil, code, fmt.Errorf("%s", bytes.TrimSpace(m))
		}
		parsed, err := oci.ParseManifest("application/vnd.oci.image.manifest.v1+json", m)
		if err != nil {
			return nil, code, err
		}
		return parsed.Blobs(), code, nil
	}
	var wg sync.WaitGroup
	for w, origin := range []string{"eastus", "westeurope"} {
		wg.Go(func() { // pushes: kept by tag, left untagged (retention), deleted by digest (tagged until then)
			base := reg.ByName[origin].URL
			for i := 0; time.Now().Before(deadline) && i < 100_000; i++ {
				tag := fmt.Sprintf("w%d-%d", w, i)
				switch i % 3 {
				case 0:
					if _, err := pushImage(base, tag, w*1_000_000+i); err != nil {
						fail("push %s: %v", tag, err)
						continue
					}
					live.Store(tag, true)
				case 1:
					if _, err := pushImage(base, "", w*1_000_000+i); err != nil {
						fail("push untagged %d: %v", i, err)
					}
				default:
					// Tagged until its delete by digest: untagged, retention
					// could delete it first and a restorer restore it, which
					// this delete would then undo (a restored tag lost, as
					// the delete asked).
					d, err := pushImage(base, "gone-"+tag, w*1_000_000+i)
					if err != nil {
						fail("push %d: %v", i, err)
						continue
					}
					if code, body, err := send(http.MethodDelete, base+"/v2/soft/app/manifests/"+d.String(), "", nil); err != nil || (code != 202 && code != 404) {
						fail("delete %s: %d %s %v", d, code, body, err)
					}
					deletes.Add(1)
				}
				pushes.Add(1)
			}
		})
	}
	for _, r := range reg.Regions {
		wg.Go(func() { // restores what its region lists, now and then; checks what is listed keeps its blobs
			for i := 0; time.Now().Before(deadline) && i < 100_000; i++ {
				code, out, err := send(http.MethodGet, r.URL+"/_georeg/v1/repository/deleted?name=soft/app", "", nil)
				var ms []region.DeletedManifest
				if err != nil || code != 200 || json.Unmarshal(out, &ms) != nil {
					fail("list-deleted in %s: %d %v", r.Name, code, err)
					continue
				}
				if len(ms) == 0 {
					time.Sleep(20 * time.Millisecond) // poll interval of a bounded loop: nothing deleted yet
					continue
				}
				m := ms[rand.IntN(len(ms))]
				// A restorable manifest's blobs are held: its payload names
				// them, each must be in the region's store.
				if blobs, ok := pushed.Load(m.Digest); ok {
					for _, b := range blobs.([]digest.Digest) {
						if code, _ := asPeerWith(t, reg.Secret, http.MethodGet, r.URL+"/v2/soft/app/blobs/"+b.String()); code != 200 {
							// Restored meanwhile (and collected by no one:
							// live) is fine; only a still listed one counts.
							if isListed(t, r.URL, m.Digest) {
								blobUnknown.Add(1)
								fail("%s lists %s restorable but lacks its blob %s: %d", r.Name, m.Digest, b, code)
							}
						}
					}
					heldChecks.Add(1)
				}
				if i%4 == 0 {
					tag := fmt.Sprintf("restored-%s-%d", r.Name, i)
					code, out, err := send(http.MethodPost, r.URL+"/_georeg/v1/repository/restore?name=soft/app", "application/json", []byte(fmt.Sprintf(`{"digest":%q,"tag":%q}`, m.Digest, tag)))
					switch {
					case err != nil:
						fail("restore in %s: %v", r.Name, err)
					case code == 200:
						restores.Add(1)
						live.Store(tag, true)
					case code == 404 || code == 400:
						// restored elsewhere or its blob deleted meanwhile: a clear refusal
					default:
						fail("restore in %s: %d %s", r.Name, code, out)
					}
				}
				var u mgmtapi.UsageReport
				if _, out, err := send(http.MethodGet, r.URL+"/_georeg/v1/usage?local=true", "", nil); err == nil && json.Unmarshal(out, &u) == nil && len(u.Regions) == 1 {
					if h := u.Regions[0].HeldBytes; h > maxHeld.Load() {
						maxHeld.Store(h)
					}
				}
			}
		})
		wg.Go(func() { // pulls live images, whole
			for i := 0; time.Now().Before(deadline) && i < 1_000_000; i++ {
				var tags []string
				live.Range(func(k, _ any) bool { tags = append(tags, k.(string)); return len(tags) < 500 })
				if len(tags) == 0 {
					time.Sleep(10 * time.Millisecond) // poll interval of a bounded loop: nothing pushed yet
					continue
				}
				tag := tags[rand.IntN(len(tags))]
				blobs, code, err := blobsOf(r.URL, tag, false)
				if err != nil || code != 200 {
					fail("manifest %s in %s: %d %v", tag, r.Name, code, err)
					continue
				}
				for _, b := range blobs {
					code, body, err := send(http.MethodGet, r.URL+"/v2/soft/app/blobs/"+b.Digest.String(), "", nil)
					if err == nil && code == 404 {
						blobUnknown.Add(1)
						fail("BLOB_UNKNOWN: %s of %s in %s", b.Digest, tag, r.Name)
					} else if err != nil || code != 200 || digest.FromBytes(body) != b.Digest {
						fail("blob %s of %s in %s: %d %v", b.Digest, tag, r.Name, code, err)
					}
				}
				pulls.Add(1)
			}
		})
	}
	wg.Wait()

	// Everything off: once collected, each region stores exactly the blobs
	// of its live manifests.
	if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/policies/retention", "application/json", []byte(`{"status":"disabled","days":0,"type":"UntaggedManifests"}`)); code != 200 {
		t.Fatalf("retention off: %d %s", code, out)
	}
	if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/policies/soft-delete", "application/json", []byte(`{"status":"disabled","days":7}`)); code != 200 {
		t.Fatalf("soft delete off: %d %s", code, out)
	}
	for _, r := range reg.Regions {
		eventually(t, 60*time.Second, func() error {
			var views []mgmtapi.ManifestView
			_, _, out := do(t, http.MethodGet, r.URL+"/_georeg/v1/repository/manifests?name=soft/app", "", nil)
			if err := json.Unmarshal(out, &views); err != nil {
				return fmt.Errorf("manifests of %s: %v", r.Name, err)
			}
			want := map[digest.Digest]int64{}
			for _, v := range views {
				blobs, code, err := blobsOf(r.URL, v.Digest.String(), true)
				if err != nil || code != 200 {
					return fmt.Errorf("manifest %s in %s: %d %v", v.Digest, r.Name, code, err)
				}
				for _, b := range blobs {
					want[b.Digest] = b.Size
				}
			}
			var wantBytes int64
			for _, n := range want {
				wantBytes += n
			}
			_, _, uout := do(t, http.MethodGet, r.URL+"/_georeg/v1/usage?local=true", "", nil)
			var u mgmtapi.UsageReport
			if err := json.Unmarshal(uout, &u); err != nil || len(u.Regions) != 1 {
				return fmt.Errorf("usage of %s: %v", r.Name, err)
			}
			if got := u.Regions[0].StoredBytes; got != wantBytes || u.Regions[0].HeldBytes != 0 {
				return fmt.Errorf("%s stores %d bytes (holds %d for soft delete), its %d live manifests reference %d", r.Name, got, u.Regions[0].HeldBytes, len(views), wantBytes)
			}
			return nil
		})
	}
	t.Logf("%s: %d pushes, %d deletes, %d restores, %d whole pulls, %d restorable manifests checked, most held by soft delete in a region %d bytes, %d BLOB_UNKNOWN",
		dur, pushes.Load(), deletes.Load(), restores.Load(), pulls.Load(), heldChecks.Load(), maxHeld.Load(), blobUnknown.Load())
	failures.Range(func(k, _ any) bool { t.Error(k); return true })
	if blobUnknown.Load() != 0 {
		t.Fatalf("%d BLOB_UNKNOWN", blobUnknown.Load())
	}
	if restores.Load() == 0 || heldChecks.Load() == 0 {
		t.Fatalf("the soak restored %d and checked %d restorable manifests: it tested nothing", restores.Load(), heldChecks.Load())
	}
}

// isListed reports whether base still lists d restorable in soft/app.
func isListed(t *testing.T, base string, d digest.Digest) bool {
	for _, m := range deletedIn(t, base, "soft/app") {
		if m.Digest == d {
			return true
		}
	}
	return false
}
