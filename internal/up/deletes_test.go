package up_test

import (
	"bytes"
	"fmt"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/up"
)

const testSecret = "deletes-test-secret"

// asPeer sends a request to a region as its peer eastus would: it is
// answered from the region's own content, never read through, so it tells
// what the region holds.
func asPeer(t *testing.T, method, url string) (int, []byte) {
	t.Helper()
	return asPeerWith(t, testSecret, method, url)
}

// asPeerWith is asPeer for a registry whose replication secret is secret.
func asPeerWith(t *testing.T, secret, method, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Authorization", "Bearer "+peerToken(t, secret, url))
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

// held reports whether region base holds path (a manifest or blob URL
// path under /v2/) in its own content.
func held(t *testing.T, base, path string) bool {
	t.Helper()
	code, _ := asPeer(t, "HEAD", base+path)
	return code == 200
}

// pushBlob uploads b to repo in region base and returns its digest.
func pushBlob(t *testing.T, base, repo string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	if code, _, body := do(t, "POST", base+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), "", b); code != 201 {
		t.Fatalf("blob push to %s: %d %s", base, code, body)
	}
	return d
}

// objects are the paths a delete test removes: a tag, a manifest by
// digest, a blob no manifest uses.
type objects struct {
	repo                 string
	tag, manifest, blob  string // paths under the registry's base URL
	tagImg, manifestOnly image
}

func (o objects) paths() []string { return []string{o.tag, o.manifest, o.blob} }

// pushObjects pushes the objects of a delete test to region base.
func pushObjects(t *testing.T, base, repo, seed string) objects {
	t.Helper()
	o := objects{repo: repo}
	o.tagImg = push(t, base, repo, "v1", seed+"-tagged", 100_000)
	o.manifestOnly = push(t, base, repo, "v2", seed+"-by-digest", 100_000)
	blob := pushBlob(t, base, repo, []byte("a blob no manifest uses "+seed))
	o.tag = "/v2/" + repo + "/manifests/v1"
	o.manifest = "/v2/" + repo + "/manifests/" + o.manifestOnly.manifest.String()
	o.blob = "/v2/" + repo + "/blobs/" + blob.String()
	return o
}

// deleteObjects deletes the tag, the manifest by digest and the blob in
// region base.
func deleteObjects(t *testing.T, base string, o objects) {
	t.Helper()
	for _, p := range o.paths() {
		if code, _, body := do(t, "DELETE", base+p, "", nil); code != 202 {
			t.Fatalf("DELETE %s in %s: %d %s", p, base, code, body)
		}
	}
}

// allHeld waits until every region holds every path of o.
func allHeld(t *testing.T, reg *up.Registry, o objects) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		for _, r := range reg.Regions {
			for _, p := range o.paths() {
				if !held(t, r.URL, p) {
					return fmt.Errorf("%s does not hold %s yet", r.Name, p)
				}
			}
		}
		return nil
	})
}

// goneEverywhere checks that no region serves any path of o to a client
// (read-through on): each answers 404, with the OCI code of its kind.
func goneEverywhere(t *testing.T, reg *up.Registry, o objects) error {
	t.Helper()
	for _, r := range reg.Regions {
		for _, p := range o.paths() {
			code, _, body := do(t, "GET", r.URL+p, "", nil)
			want := "MANIFEST_UNKNOWN"
			if strings.Contains(p, "/blobs/") {
				want = "BLOB_UNKNOWN"
			}
			if got, _ := errorOf(body); code != 404 || got != want {
				return fmt.Errorf("%s serves %s: %d %s", r.Name, p, code, got)
			}
		}
	}
	return nil
}

// antiEntropyEverywhere runs one anti-entropy round of every region
// against every peer, now.
func antiEntropyEverywhere(t *testing.T, reg *up.Registry) {
	t.Helper()
	for _, r := range reg.Regions {
		for _, p := range reg.Regions {
			if p == r {
				continue
			}
			if _, err := r.Node.Replicator().AntiEntropyRound(t.Context(), p.Name); err != nil {
				t.Fatalf("anti-entropy %s <- %s: %v", r.Name, p.Name, err)
			}
		}
	}
}

// TestInvariant9DeletesReachEveryRegionAndStay: in each region in turn, a
// tag, a manifest by digest and a blob pushed in another region are
// deleted; every region answers 404 within the replication window, reads
// nothing back through from a peer, and still answers 404 after every
// region ran anti-entropy against every other.
func TestInvariant9DeletesReachEveryRegionAndStay(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: testSecret, Regions: threeRegions(), AntiEntropyInterval: time.Hour})
	for i, deleter := range reg.Regions {
		origin := reg.Regions[(i+1)%len(reg.Regions)]
		o := pushObjects(t, origin.URL, "del/"+deleter.Name, deleter.Name)
		allHeld(t, reg, o)
		deleteObjects(t, deleter.URL, o)
		// In the deleting region at once, without asking a peer.
		for _, p := range o.paths() {
			if code, _, _ := do(t, "GET", deleter.URL+p, "", nil); code != 404 {
				t.Fatalf("%s serves %s right after deleting it: %d", deleter.Name, p, code)
			}
		}
		eventually(t, 30*time.Second, func() error { return goneEverywhere(t, reg, o) })
		antiEntropyEverywhere(t, reg)
		if err := goneEverywhere(t, reg, o); err != nil {
			t.Fatalf("after anti-entropy: %v", err)
		}
		// What the deleted tag pointed at and what no delete touched is
		// still served.
		for _, r := range reg.Regions {
			if err := pullable(t, r.URL, o.repo, o.tagImg.manifest.String(), o.tagImg); err != nil {
				t.Fatalf("the untouched manifest: %v", err)
			}
		}
	}
}

// feedVersion returns the version of the newest record of kind for repo in
// region base's feed.
func feedVersion(t *testing.T, base, kind, repo string) hlc.Version {
	t.Helper()
	page := feedPage(t, base)
	var out hlc.Version
	for _, r := range page.Records {
		if r.Kind == kind && r.Repo == repo {
			out, _ = hlc.ParseVersion(r.Version)
		}
	}
	if out.IsZero() {
		t.Fatalf("no %s record for %s in %s", kind, repo, base)
	}
	return out
}

// TestInvariant9ARaceOfADeleteAndAPushEndsWithTheLaterOne: westeurope
// deletes an image (and, separately, a blob) while southeastasia pushes
// the same content again; every region ends with whichever of the two has
// the later version.
func TestInvariant9ARaceOfADeleteAndAPushEndsWithTheLaterOne(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: testSecret, Regions: threeRegions(), AntiEntropyInterval: time.Hour})
	east, west, asia := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL, reg.ByName["southeastasia"].URL
	outcomes := map[bool]int{}
	for round := range 6 {
		repo := fmt.Sprintf("race/r%d", round)
		img := push(t, east, repo, "v1", repo, 50_000)
		blob := []byte("a blob to race over " + repo)
		d := pushBlob(t, east, repo, blob)
		o := objects{repo: repo, tag: "/v2/" + repo + "/manifests/v1", manifest: "/v2/" + repo + "/manifests/" + img.manifest.String(), blob: "/v2/" + repo + "/blobs/" + d.String()}
		allHeld(t, reg, o)
		m := manifestOf(t, east, repo, img.manifest.String())
		del := func() {
			if code, _, body := do(t, "DELETE", west+o.manifest, "", nil); code != 202 {
				t.Errorf("delete: %d %s", code, body)
			}
			if code, _, body := do(t, "DELETE", west+o.blob, "", nil); code != 202 {
				t.Errorf("blob delete: %d %s", code, body)
			}
		}
		again := func() {
			if code, _, body := do(t, "PUT", asia+"/v2/"+repo+"/manifests/v1", "application/vnd.oci.image.manifest.v1+json", m); code != 201 {
				t.Errorf("push again: %d %s", code, body)
			}
			pushBlob(t, asia, repo, blob)
		}
		if round%2 == 1 { // vary who starts first
			del, again = again, del
		}
		var wg sync.WaitGroup
		wg.Go(del)
		wg.Go(again)
		wg.Wait()
		pushWins := feedVersion(t, west, "manifest_delete", repo).Less(feedVersion(t, asia, "manifest", repo))
		blobWins := feedVersion(t, west, "blob_delete", repo).Less(feedVersion(t, asia, "blob", repo))
		outcomes[pushWins]++
		eventually(t, 30*time.Second, func() error {
			for _, r := range reg.Regions {
				for path, want := range map[string]bool{o.tag: pushWins, o.manifest: pushWins, o.blob: blobWins} {
					if got := held(t, r.URL, path); got != want {
						return fmt.Errorf("%s: %s held=%t, want %t (the later of the delete and the push)", r.Name, path, got, want)
					}
				}
			}
			return nil
		})
	}
	t.Logf("push won %d rounds, delete %d", outcomes[true], outcomes[false])
}

// TestInvariant9ADeleteMadeDuringAPartitionIsNotRevived: southeastasia is
// cut off while eastus deletes an image, a tag and a blob it holds. While
// southeastasia can be read from but cannot yet read the delete, no other
// region reads the deleted objects back through from it; after healing,
// every region answers 404, also after anti-entropy in every direction.
func TestInvariant9ADeleteMadeDuringAPartitionIsNotRevived(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: testSecret, Regions: threeRegions(),
		AntiEntropyInterval: time.Hour, Distance: up.Links(link.Shape{})})
	east, asia := reg.ByName["eastus"], reg.ByName["southeastasia"]
	o := pushObjects(t, east.URL, "part/del", "partition")
	allHeld(t, reg, o)

	reg.Cut("southeastasia", link.Partition)
	deleteObjects(t, east.URL, o)
	west := reg.ByName["westeurope"]
	eventually(t, 30*time.Second, func() error {
		for _, p := range o.paths() {
			if held(t, west.URL, p) {
				return fmt.Errorf("westeurope still holds %s", p)
			}
		}
		return nil
	})
	for _, p := range o.paths() {
		if !held(t, asia.URL, p) {
			t.Fatalf("southeastasia lost %s while cut off", p)
		}
	}
	// Heal the paths into southeastasia only: the others can read from it,
	// it cannot read their feeds yet.
	for _, other := range []string{"eastus", "westeurope"} {
		reg.Link(other, "southeastasia").Set(link.Healthy)
	}
	for _, r := range []*up.Region{east, west} {
		for _, p := range o.paths() {
			if code, _, _ := do(t, "GET", r.URL+p, "", nil); code != 404 {
				t.Fatalf("%s read %s back through from southeastasia: %d", r.Name, p, code)
			}
		}
		if _, err := r.Node.Replicator().AntiEntropyRound(t.Context(), "southeastasia"); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range o.paths() {
		if held(t, east.URL, p) || held(t, west.URL, p) {
			t.Fatalf("anti-entropy with southeastasia revived %s", p)
		}
	}
	reg.Cut("southeastasia", link.Healthy)
	eventually(t, 30*time.Second, func() error { return goneEverywhere(t, reg, o) })
	antiEntropyEverywhere(t, reg)
	if err := goneEverywhere(t, reg, o); err != nil {
		t.Fatalf("after anti-entropy: %v", err)
	}
}

// TestInvariant9ARepairDoesNotReviveADeletedBlob: westeurope deletes a
// blob that eastus and southeastasia, which have not heard of the delete
// (they cannot read westeurope's feed), still hold. A manifest pushed to
// westeurope that uses the blob is refused: the repair of a split push
// does not fetch a copy older than the delete, and the blob stays deleted
// there. Once eastus holds a newer copy (pushed again after the delete),
// the same manifest PUT repairs from it and succeeds.
func TestInvariant9ARepairDoesNotReviveADeletedBlob(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: testSecret, Regions: threeRegions(),
		Distance: up.Links(link.Shape{}), AntiEntropyInterval: time.Hour})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	const repo = "revive/app"
	layer := []byte("a layer that leaked a secret")
	config := []byte("{}")
	l, c := pushBlob(t, east, repo, layer), pushBlob(t, east, repo, config)
	for _, r := range reg.Regions {
		for _, d := range []digest.Digest{l, c} {
			eventually(t, 30*time.Second, func() error {
				if !held(t, r.URL, "/v2/"+repo+"/blobs/"+d.String()) {
					return fmt.Errorf("%s lacks %s", r.Name, d)
				}
				return nil
			})
		}
	}
	for _, from := range []string{"eastus", "southeastasia"} {
		reg.Link(from, "westeurope").Set(link.Partition) // they do not hear westeurope's delete
	}
	if code, _, body := do(t, "DELETE", west+"/v2/"+repo+"/blobs/"+l.String(), "", nil); code != 202 {
		t.Fatalf("delete in westeurope: %d %s", code, body)
	}
	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, c, len(config), l, len(layer))
	code, _, body := do(t, "PUT", west+"/v2/"+repo+"/manifests/v1", "application/vnd.oci.image.manifest.v1+json", manifest)
	if code == 201 || !strings.Contains(string(body), "deleted") {
		t.Fatalf("a manifest using a blob deleted here, held elsewhere only in older copies: %d %s; want it refused, saying the blob was deleted", code, body)
	}
	if held(t, west, "/v2/"+repo+"/blobs/"+l.String()) {
		t.Fatal("the refused manifest's repair revived the deleted blob in westeurope")
	}
	// Pushed again in eastus after the delete: a newer copy, which the
	// repair takes.
	pushBlob(t, east, repo, layer)
	code, _, body = do(t, "PUT", west+"/v2/"+repo+"/manifests/v1", "application/vnd.oci.image.manifest.v1+json", manifest)
	if code != 201 {
		t.Fatalf("the manifest once eastus holds a newer copy: %d %s", code, body)
	}
	if !held(t, west, "/v2/"+repo+"/blobs/"+l.String()) {
		t.Fatal("westeurope does not hold the blob the repair brought")
	}
}

// peerToken is eastus's token for the region at url (which it asks to
// prove its name), under the replication secret.
func peerToken(t *testing.T, secret, url string) string {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	s := peerauth.NewSigner(peerauth.FromSecret(secret), "eastus", http.DefaultClient)
	name, err := s.Identify(t.Context(), u.Scheme+"://"+u.Host)
	if err != nil {
		t.Fatal(err)
	}
	return s.Token(name)
}

// TestInvariant9ADeleteThatArrivesDuringAReadThroughWins: a client's GET
// of a blob westeurope does not hold reads it through from eastus; while
// eastus's answer is held on the link, the blob is deleted in eastus and the
// delete reaches westeurope. The client that asked before the delete may
// get the bytes, but westeurope must not link the blob when the fetch
// ends: it is not held there afterwards and a new GET says it was deleted.
func TestInvariant9ADeleteThatArrivesDuringAReadThroughWins(t *testing.T) {
	link := &faultyLink{}
	link.set(isFeed) // neither other region hears eastus's feed yet
	reg := startLinked(t, link, []string{"westeurope", "southeastasia"}, nil)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	westRegion := reg.ByName["westeurope"].Node.Region
	const repo = "rtdel/app"
	b := []byte("a small blob read through while it is deleted") // inline in the feed: its record's apply fetches nothing
	d := pushBlob(t, east, repo, b)
	path := "/v2/" + repo + "/blobs/" + d.String()
	linkedInWest := func() bool { code, _ := asPeerWith(t, reg.Secret, "HEAD", west+path); return code == 200 }

	release := make(chan struct{})
	link.holdAnswer.Store(true) // eastus answers with the bytes before its delete; they reach westeurope after it
	link.hold(func(r *http.Request) bool { return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, path) }, release)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	type answer struct {
		code int
		body []byte
	}
	got := make(chan answer, 1)
	go func() {
		code, _, body := do(t, "GET", west+path, "", nil)
		got <- answer{code, body}
	}()
	eventually(t, 30*time.Second, func() error {
		if link.waiting() == 0 {
			return fmt.Errorf("westeurope's read-through has not reached eastus")
		}
		return nil
	})
	if code, _, body := do(t, "DELETE", east+path, "", nil); code != 202 {
		t.Fatalf("delete in eastus: %d %s", code, body)
	}
	link.set(func(*http.Request) bool { return false }) // the feed flows: westeurope hears the push and the delete
	eventually(t, 30*time.Second, func() error {
		if _, ok, err := westRegion.BlobTombstone(t.Context(), repo, d); err != nil || !ok {
			return fmt.Errorf("westeurope holds no delete of the blob yet (%v)", err)
		}
		if linkedInWest() {
			return fmt.Errorf("westeurope still links the blob")
		}
		return nil
	})
	close(release)
	released = true
	select {
	case a := <-got:
		if a.code != 200 && a.code != 404 {
			t.Fatalf("the GET that asked before the delete: %d %s", a.code, a.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the read-through did not end within 30 s of its release")
	}
	if linkedInWest() {
		t.Fatal("westeurope links the blob its read-through brought after the delete arrived: the deleted blob is back")
	}
	code, _, body := do(t, "GET", west+path, "", nil)
	if c, detail := errorOf(body); code != 404 || c != "BLOB_UNKNOWN" || detail["state"] != "deleted" {
		t.Fatalf("a GET in westeurope after the delete: %d %s; want BLOB_UNKNOWN, state deleted", code, body)
	}
}
