package up_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/cache"
	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/up"
)

// TestAColdPullIsServedAsItIsFetched: an upstream whose blobs (3 MiB
// layers) send half their bytes and then stall. A client in a region
// that is not the one fetching the image for the registry gets the
// manifest while no blob has arrived whole (it is not stored first), and
// then a layer's first half MiB while the upstream still holds its second
// half (it streams, through the fetching region, which follows its own
// fetch through the staging file in the store's 1 MiB steps; on S3,
// whose staging bytes cannot be read back, through the fetch's spill
// file). Meanwhile no region lists the
// tag (nothing partial is stored). Released, the layer is whole and
// verified, every region then holds the image, and the upstream served
// each blob once: the client's read and the region's fetch were one.
func TestAColdPullIsServedAsItIsFetched(t *testing.T) {
	upstream := startUpstream(t, "", "")
	want := upstream.putSized(t, "library/stream", "v1", 2, 3<<20)
	regions := []string{"eastus", "westeurope", "southeastasia"}
	fetcher := cache.Fetcher(regions, "hub/stream|v1")
	puller := otherThan(regions, fetcher)
	// In the shared pass (S3, whose staging data cannot be read back:
	// followed through spill files) the regions encrypt at rest, and so
	// do their spill files.
	dir := t.TempDir()
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions(), Encrypt: shared()})
	at := reg.ByName[puller].URL
	putCacheRule(t, reg, at, "library", `{"source":"http://`+upstream.addr+`/library/*","target":"hub/*"}`)
	gets0 := upstream.blobGets.Load()
	upstream.holdBlobs.Store(true)
	defer upstream.openGate()

	type answer struct {
		code int
		body []byte
		err  error
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	manifest := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", at+"/v2/hub/stream/manifests/v1", nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
		resp, err := client.Do(req)
		if err != nil {
			manifest <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		manifest <- answer{resp.StatusCode, b, err}
	}()
	var m answer
	select {
	case m = <-manifest:
	case <-time.After(30 * time.Second): // a bound: the blobs wait for the test
		t.Fatal("the manifest of a cold pull waited for its blobs (stored, then served)")
	}
	if m.err != nil || m.code != 200 || digest.FromBytes(m.body) != want {
		t.Fatalf("cold pull in %s (the fetcher is %s): %d %v %s", puller, fetcher, m.code, m.err, m.body)
	}
	var parsed struct {
		Layers []struct {
			Digest digest.Digest
			Size   int64
		}
	}
	if err := json.Unmarshal(m.body, &parsed); err != nil || len(parsed.Layers) != 2 {
		t.Fatalf("the manifest: %v %s", err, m.body)
	}
	layer := parsed.Layers[0]

	// Nothing of it is stored anywhere yet.
	for _, r := range reg.Regions {
		if tags := listTags(t, r.URL, "hub/stream"); slices.Contains(tags, "v1") {
			t.Fatalf("%s lists hub/stream:v1 while its blobs are still arriving", r.Name)
		}
	}

	resp, err := client.Get(at + "/v2/hub/stream/blobs/" + layer.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != layer.Size {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		t.Fatalf("the layer: %d, %d bytes announced, want %d: %s", resp.StatusCode, resp.ContentLength, layer.Size, b)
	}
	h := sha256.New()
	var got bytes.Buffer
	half := make(chan error, 1)
	go func() {
		// Half a MiB: the fetching region's first step is 1 MiB, and a
		// region streaming holds back the last byte it has until the
		// blob is verified.
		_, err := io.CopyN(io.MultiWriter(h, &got), resp.Body, content.BufferSize/2)
		half <- err
	}()
	select {
	case err := <-half:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the layer's first half MiB did not reach the client while the upstream held its second half: not streamed")
	}
	if shared() {
		// The layer is followed through spill files, which hold none of
		// its bytes in the clear.
		spills, _ := filepath.Glob(filepath.Join(dir, "*", "spill", "*", "fetch-*"))
		if len(spills) == 0 {
			t.Fatal("no spill file while the layer streams from S3 regions")
		}
		for _, p := range spills {
			b, _ := os.ReadFile(p)
			if len(b) >= 4096 && bytes.Contains(b, got.Bytes()[:4096]) {
				t.Fatalf("spill file %s holds the layer in the clear", p)
			}
		}
	}
	upstream.openGate()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	if got := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)); got != layer.Digest {
		t.Fatalf("the layer streamed hashes to %s, want %s", got, layer.Digest)
	}

	// Stored whole, in every region; each blob came from the upstream once.
	for _, r := range reg.Regions {
		eventually(t, 60*time.Second, func() error {
			if !slices.Contains(listTags(t, r.URL, "hub/stream"), "v1") {
				return fmt.Errorf("%s does not list hub/stream:v1", r.Name)
			}
			return nil
		})
	}
	if n := upstream.blobGets.Load() - gets0; n != 3 {
		t.Fatalf("the upstream served %d blob GETs for an image of 3 blobs", n)
	}
}

// listTags lists repo's tags in the region at base (none when it does not
// know repo).
func listTags(t *testing.T, base, repo string) []string {
	t.Helper()
	resp, err := http.Get(base + "/v2/" + repo + "/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Tags []string }
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
	}
	return out.Tags
}

// TestAColdPullOfAnIndexServesItsPlatformsAsTheyAreFetched: an index of
// two platforms whose blobs stall upstream. Pulled in a region that is
// not the fetcher, the index and then a platform's manifest are served
// while no blob has arrived (the platform is asked of the region
// fetching the index, not fetched a second time by the region rendezvous
// hashing names for it); released, every region holds the index and
// both platforms, and the upstream served each blob once.
func TestAColdPullOfAnIndexServesItsPlatformsAsTheyAreFetched(t *testing.T) {
	upstream := startUpstream(t, "", "")
	regions := []string{"eastus", "westeurope", "southeastasia"}
	fetcher := cache.Fetcher(regions, "hub/multi|v1")
	// An index whose second platform, asked for alone, another region
	// would fetch: the platform must come from the fetch of the index.
	var idx v1.ImageIndex
	for range 50 {
		i, err := random.Index(1<<20, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		im, _ := i.IndexManifest()
		if cache.Fetcher(regions, "hub/multi|"+im.Manifests[1].Digest.String()) != fetcher {
			idx = i
			break
		}
	}
	if idx == nil {
		t.Fatal("no index whose platform another region would fetch")
	}
	ref, err := name.ParseReference(upstream.addr+"/library/multi:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	want, _ := idx.Digest()
	puller := otherThan(regions, fetcher)
	// In the shared pass (S3, whose staging data cannot be read back:
	// followed through spill files) the regions encrypt at rest, and so
	// do their spill files.
	dir := t.TempDir()
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions(), Encrypt: shared()})
	at := reg.ByName[puller].URL
	putCacheRule(t, reg, at, "library", `{"source":"http://`+upstream.addr+`/library/*","target":"hub/*"}`)
	gets0 := upstream.blobGets.Load()
	upstream.holdBlobs.Store(true)
	defer upstream.openGate()

	get := func(path, accept string) (int, []byte) {
		type answer struct {
			code int
			body []byte
			err  error
		}
		got := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequest("GET", at+path, nil)
			req.Header.Set("Accept", accept)
			resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
			if err != nil {
				got <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			got <- answer{resp.StatusCode, b, err}
		}()
		select {
		case a := <-got:
			if a.err != nil {
				t.Fatal(a.err)
			}
			return a.code, a.body
		case <-time.After(30 * time.Second): // a bound: the blobs wait for the test
			t.Fatalf("GET %s in %s waited for the image's blobs", path, puller)
		}
		return 0, nil
	}
	code, body := get("/v2/hub/multi/manifests/v1", string(im.MediaType))
	if code != 200 || digest.FromBytes(body).String() != want.String() {
		t.Fatalf("the index: %d %s", code, body)
	}
	platform := im.Manifests[1].Digest.String()
	code, body = get("/v2/hub/multi/manifests/"+platform, "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	if code != 200 || digest.FromBytes(body).String() != platform {
		t.Fatalf("a platform of the index while its blobs arrive: %d %s", code, body)
	}
	upstream.openGate()
	blobs := 0
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		ls, _ := img.Layers()
		blobs += len(ls) + 1
	}
	for _, r := range reg.Regions {
		eventually(t, 60*time.Second, func() error {
			if !slices.Contains(listTags(t, r.URL, "hub/multi"), "v1") {
				return fmt.Errorf("%s does not list hub/multi:v1", r.Name)
			}
			for _, m := range im.Manifests {
				resp, err := http.Head(r.URL + "/v2/hub/multi/manifests/" + m.Digest.String())
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					return fmt.Errorf("%s: platform %s: %d", r.Name, m.Digest, resp.StatusCode)
				}
			}
			return nil
		})
	}
	if n := upstream.blobGets.Load() - gets0; n != int64(blobs) {
		t.Fatalf("the upstream served %d blob GETs for an index of %d blobs", n, blobs)
	}
}

// TestAColdPullResolvedByTagThenDigestIsOneFetch: containerd resolves a
// tag with a HEAD and then GETs the manifest by digest. In the region
// that fetches the tag's image, while its blobs stall upstream, the GET
// by digest is answered from the fetch running, not sent to the region
// hashing names for the digest (which would fetch the image again).
func TestAColdPullResolvedByTagThenDigestIsOneFetch(t *testing.T) {
	upstream := startUpstream(t, "", "")
	regions := []string{"eastus", "westeurope", "southeastasia"}
	fetcher := cache.Fetcher(regions, "hub/resolve|v1")
	var img v1.Image
	for range 50 {
		i, err := random.Image(1<<20, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := i.Digest()
		if cache.Fetcher(regions, "hub/resolve|"+d.String()) != fetcher {
			img = i
			break
		}
	}
	if img == nil {
		t.Fatal("no image whose digest another region would fetch")
	}
	ref, _ := name.ParseReference(upstream.addr+"/library/resolve:v1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()})
	at := reg.ByName[fetcher].URL
	putCacheRule(t, reg, at, "library", `{"source":"http://`+upstream.addr+`/library/*","target":"hub/*"}`)
	gets0 := upstream.blobGets.Load()
	upstream.holdBlobs.Store(true)
	defer upstream.openGate()
	client := &http.Client{Timeout: 30 * time.Second} // a bound: the blobs wait for the test
	accept := "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
	req, _ := http.NewRequest("HEAD", at+"/v2/hub/resolve/manifests/v1", nil)
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("HEAD by tag while the blobs stall: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want.String() {
		t.Fatalf("HEAD by tag: %d %q, want %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), want)
	}
	req, _ = http.NewRequest("GET", at+"/v2/hub/resolve/manifests/"+want.String(), nil)
	req.Header.Set("Accept", accept)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatalf("GET by digest while the blobs stall: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || digest.FromBytes(body).String() != want.String() {
		t.Fatalf("GET by digest: %d %s", resp.StatusCode, body)
	}
	upstream.openGate()
	layers, _ := img.Layers()
	for _, r := range reg.Regions {
		eventually(t, 60*time.Second, func() error {
			if !slices.Contains(listTags(t, r.URL, "hub/resolve"), "v1") {
				return fmt.Errorf("%s does not list hub/resolve:v1", r.Name)
			}
			return nil
		})
	}
	if n, blobs := upstream.blobGets.Load()-gets0, int64(len(layers)+1); n != blobs {
		t.Fatalf("the upstream served %d blob GETs for an image of %d blobs", n, blobs)
	}
}

// TestTwentyColdPullsOfA50MiBImageFetchEachBlobOnce: twenty clients, in
// the three regions through the front door, pull one 50 MiB image (five
// 10 MiB layers) that no region holds, all at once and whole: each gets
// every blob with the upstream's bytes, the upstream serves each blob
// once for the whole registry (a client's read, the fetching region's
// copy and the other regions' reads are one fetch), and every region
// then holds the image.
func TestTwentyColdPullsOfA50MiBImageFetchEachBlobOnce(t *testing.T) {
	upstream := startUpstream(t, "", "")
	want := upstream.putSized(t, "library/big", "v1", 5, 10<<20)
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), FrontDoor: "127.0.0.1:0"})
	putCacheRule(t, reg, reg.ByName["eastus"].URL, "library", `{"source":"http://`+upstream.addr+`/library/*","target":"hub/*"}`)
	clients := []*clientAt{newClientAt(t, reg.FrontDoor, "127.0.0.1"), newClientAt(t, reg.FrontDoor, "127.0.0.2"), newClientAt(t, reg.FrontDoor, "127.0.0.3")}
	for i, c := range clients {
		c.routedTo(reg.Regions[i].Name)
	}
	gets0 := upstream.blobGets.Load()
	get := func(c *clientAt, path string) (int, string, []byte, error) {
		req, _ := http.NewRequest("GET", c.door+path, nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
		resp, err := (&http.Client{Transport: c.http.Transport, Timeout: 2 * time.Minute}).Do(req)
		if err != nil {
			return 0, "", nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Georeg-Region"), b, err
	}
	var wg sync.WaitGroup
	var blobs atomic.Int64
	for i := range 20 {
		c := clients[i%3]
		wg.Go(func() {
			code, at, m, err := get(c, "/v2/hub/big/manifests/v1")
			if err != nil || code != 200 || digest.FromBytes(m) != want {
				t.Errorf("client %d: the manifest in %s: %d %v", i, at, code, err)
				return
			}
			var parsed struct {
				Config struct{ Digest digest.Digest }
				Layers []struct{ Digest digest.Digest }
			}
			if err := json.Unmarshal(m, &parsed); err != nil || len(parsed.Layers) != 5 {
				t.Errorf("client %d: the manifest: %v", i, err)
				return
			}
			ds := []digest.Digest{parsed.Config.Digest}
			for _, l := range parsed.Layers {
				ds = append(ds, l.Digest)
			}
			blobs.Store(int64(len(ds)))
			for _, d := range ds {
				code, at, b, err := get(c, "/v2/hub/big/blobs/"+d.String())
				if err != nil || code != 200 || digest.FromBytes(b) != d {
					t.Errorf("client %d: blob %s in %s: %d, %d bytes, %v", i, d, at, code, len(b), err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, r := range reg.Regions {
		eventually(t, 60*time.Second, func() error {
			if !slices.Contains(listTags(t, r.URL, "hub/big"), "v1") {
				return fmt.Errorf("%s does not list hub/big:v1", r.Name)
			}
			return nil
		})
	}
	if n := upstream.blobGets.Load() - gets0; n != blobs.Load() {
		t.Fatalf("twenty cold pulls in three regions: the upstream served %d blob GETs for an image of %d blobs", n, blobs.Load())
	}
}

// otherThan is the first of regions that is not region.
func otherThan(regions []string, region string) string {
	for _, r := range regions {
		if r != region {
			return r
		}
	}
	return ""
}
