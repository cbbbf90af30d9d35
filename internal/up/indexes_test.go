package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/up"
)

// multiImage is a pushed image index: its children (each an image), and
// a referrer whose subject is the index.
type multiImage struct {
	index    digest.Digest
	children []image
	referrer image
}

// pushIndex pushes to childBase two child images by digest (layers of
// the sizes given), then, once base holds them, to base an index over
// them under tag and an SBOM-like artifact whose subject is the index —
// in the order a client pushes them.
func pushIndex(t *testing.T, reg *up.Registry, childBase, base, repo, tag, seed string, layerSizes [2]int) multiImage {
	t.Helper()
	var out multiImage
	var entries []string
	for i, size := range layerSizes {
		child := push(t, childBase, repo, "", fmt.Sprintf("%s-child-%d", seed, i), size)
		out.children = append(out.children, child)
		eventually(t, 30*time.Second, func() error { return holdsImage(t, reg, base, repo, child.manifest.String(), child) })
		_, _, m := do(t, "GET", base+"/v2/"+repo+"/manifests/"+child.manifest.String(), "", nil)
		entries = append(entries, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"%s","os":"linux"}}`,
			child.manifest, len(m), []string{"amd64", "arm64"}[i]))
	}
	idx := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s,%s]}`, entries[0], entries[1])
	if code, _, body := do(t, "PUT", base+"/v2/"+repo+"/manifests/"+tag, "application/vnd.oci.image.index.v1+json", idx); code != 201 {
		t.Fatalf("index: %d %s", code, body)
	}
	out.index = digest.FromBytes(idx)
	sbom := pushBlob(t, base, repo, []byte(`{"sbom":"`+seed+`"}`))
	empty := pushBlob(t, base, repo, []byte(`{}`))
	ref := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sbom.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[{"mediaType":"application/vnd.example.sbom.v1+json","digest":"%s","size":%d}],"subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%d}}`,
		empty, sbom, len(`{"sbom":"`+seed+`"}`), out.index, len(idx))
	rd := digest.FromBytes(ref)
	if code, _, body := do(t, "PUT", base+"/v2/"+repo+"/manifests/"+rd.String(), "application/vnd.oci.image.manifest.v1+json", ref); code != 201 {
		t.Fatalf("referrer: %d %s", code, body)
	}
	out.referrer = image{manifest: rd, blobs: []digest.Digest{empty, sbom}}
	return out
}

// holdsIndex checks that region base holds repo:tag as img in its own
// storage — the index, each child with its blobs, the referrer with its
// blobs, and the referrer listed for the index — asking as a peer, so
// nothing is read through.
func holdsIndex(t *testing.T, reg *up.Registry, base, repo, tag string, img multiImage) error {
	t.Helper()
	if code, body := asPeerWith(t, reg.Secret, "GET", base+"/v2/"+repo+"/manifests/"+tag); code != 200 || digest.FromBytes(body) != img.index {
		return fmt.Errorf("%s holds %s:%s? %d %s", base, repo, tag, code, digest.FromBytes(body))
	}
	for _, child := range append(slicesClone(img.children), img.referrer) {
		if err := holdsImage(t, reg, base, repo, child.manifest.String(), child); err != nil {
			return err
		}
	}
	code, body := asPeerWith(t, reg.Secret, "GET", base+"/v2/"+repo+"/referrers/"+img.index.String())
	var refs struct{ Manifests []struct{ Digest string } }
	if code != 200 || json.Unmarshal(body, &refs) != nil {
		return fmt.Errorf("%s referrers of %s: %d %s", base, img.index, code, body)
	}
	for _, r := range refs.Manifests {
		if r.Digest == img.referrer.manifest.String() {
			return nil
		}
	}
	return fmt.Errorf("%s does not list %s as a referrer of %s: %s", base, img.referrer.manifest, img.index, body)
}

func slicesClone(s []image) []image { return append([]image(nil), s...) }

// TestAnIndexWithChildrenAndReferrersReplicatesWholeAndInOrder: with
// read-through off in westeurope and southeastasia (so what they serve,
// they hold), image indexes whose children have layers inside a feed
// record and above it, each with a referrer, are pushed to eastus while
// a client pulls the index in westeurope in a loop. Every index it is
// served has every child and every blob there (blobs, then children,
// then the index, then its tag: invariants 2 and 3); at the end both
// regions hold every index, child, blob and referrer.
//
// The children are pushed to southeastasia, which westeurope cannot
// reach, and the index to eastus once eastus holds them: eastus's feed
// carries the index but not the children (a region's feed holds only
// what it originated), so westeurope must fetch each child from eastus
// before it applies the index.
func TestAnIndexWithChildrenAndReferrersReplicatesWholeAndInOrder(t *testing.T) {
	cut := &faultyLink{}
	cut.set(func(*http.Request) bool { return true })
	cfg := up.Config{DataDir: t.TempDir(), Regions: threeRegions(),
		NoReadThrough: map[string]bool{"westeurope": true, "southeastasia": true}}
	cfg.Link = func(from, to, u string) (string, error) {
		if from == "westeurope" && to == "southeastasia" {
			return cut.start(t, u), nil
		}
		return u, nil
	}
	reg := runRegistry(t, cfg)
	east, west, asia := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL, reg.ByName["southeastasia"].URL

	var pulls, partial, notYet atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 100_000 { // bounded; stops when the pushes end
			select {
			case <-stop:
				return
			default:
			}
			code, _, body := do(t, "GET", west+"/v2/multi/app/manifests/latest", "", nil)
			if code == 404 {
				notYet.Add(1)
				continue
			}
			var idx struct{ Manifests []struct{ Digest string } }
			if code != 200 || json.Unmarshal(body, &idx) != nil || len(idx.Manifests) != 2 {
				t.Errorf("index in westeurope: %d %s", code, body)
				partial.Add(1)
				continue
			}
			whole := true
			for _, c := range idx.Manifests {
				code, _, body := do(t, "GET", west+"/v2/multi/app/manifests/"+c.Digest, "", nil)
				var m struct {
					Config struct{ Digest string }
					Layers []struct{ Digest string }
				}
				if code != 200 || json.Unmarshal(body, &m) != nil {
					t.Errorf("child %s of a served index: %d", c.Digest, code)
					whole = false
					continue
				}
				for _, d := range append([]string{m.Config.Digest}, layerDigests(m.Layers)...) {
					if code, _, blob := do(t, "GET", west+"/v2/multi/app/blobs/"+d, "", nil); code != 200 || "sha256:"+sha256Hex(blob) != d {
						t.Errorf("blob %s of a served index's child: %d", d, code)
						whole = false
					}
				}
			}
			if whole {
				pulls.Add(1)
			} else {
				partial.Add(1)
			}
		}
	})

	stopPuller := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopPuller() // also when a check below fails: the regions stop after it

	var last multiImage
	sizes := [][2]int{{20_000, 300_000}, {2_000_000, 30_000}, {70_000, 1_000_000}}
	for i := range 6 {
		last = pushIndex(t, reg, asia, east, "multi/app", "latest", fmt.Sprintf("multi-%d", i), sizes[i%3])
	}
	for _, base := range []string{west, asia} {
		eventually(t, 30*time.Second, func() error { return holdsIndex(t, reg, base, "multi/app", "latest", last) })
	}
	stopPuller()
	if partial.Load() > 0 {
		t.Fatalf("%d of %d pulls of the index saw it in part", partial.Load(), pulls.Load()+partial.Load())
	}
	if pulls.Load() == 0 {
		t.Fatalf("no pull of the index was served whole (%d answered 404): the test proves nothing", notYet.Load())
	}
	t.Logf("%d whole pulls of the index in westeurope, %d before the first arrived", pulls.Load(), notYet.Load())
}
