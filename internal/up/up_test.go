package up_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/up"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"))
}

// threeRegions are the regions every test registry runs, on free ports.
func threeRegions() []up.RegionSpec {
	return []up.RegionSpec{{Name: "eastus", Listen: "127.0.0.1:0"}, {Name: "westeurope", Listen: "127.0.0.1:0"}, {Name: "southeastasia", Listen: "127.0.0.1:0"}}
}

// runRegistry starts cfg's registry and stops it, and waits for every
// goroutine it started, when the test ends. With a front door it returns
// once every region is reported Ready, as georeg up's user waits for its
// Ready lines: before them a client may be sent to another region and
// moved back.
func runRegistry(t *testing.T, cfg up.Config) *up.Registry {
	t.Helper()
	reg := runLogged(t, cfg, io.Discard)
	if cfg.FrontDoor != "" {
		awaitReady(t, reg)
	}
	return reg
}

// startRegistry runs three regions on free loopback ports, with the
// default simulated distance when distance is set.
func startRegistry(t *testing.T, distance ...bool) *up.Registry {
	t.Helper()
	cfg := up.Config{DataDir: t.TempDir(), Regions: threeRegions()}
	if len(distance) > 0 && distance[0] {
		cfg.Distance = up.DefaultDistance
	}
	return runRegistry(t, cfg)
}

func do(t *testing.T, method, url, contentType string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data
}

// image is a pushed image: its manifest digest and every blob.
type image struct {
	manifest digest.Digest
	blobs    []digest.Digest
}

func push(t *testing.T, base, repo, tag, seed string, layerSize int) image {
	t.Helper()
	cfg := []byte(`{"seed":"` + seed + `"}`)
	layer := bytes.Repeat([]byte(seed+";"), layerSize/(len(seed)+1)+1)[:layerSize]
	for _, b := range [][]byte{cfg, layer} {
		if code, _, body := do(t, "POST", base+"/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), "", b); code != 201 {
			t.Fatalf("blob: %d %s", code, body)
		}
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer)))
	ref := tag
	if ref == "" { // by digest, untagged
		ref = digest.FromBytes(m).String()
	}
	if code, _, body := do(t, "PUT", base+"/v2/"+repo+"/manifests/"+ref, "application/vnd.oci.image.manifest.v1+json", m); code != 201 {
		t.Fatalf("manifest: %d %s", code, body)
	}
	return image{manifest: digest.FromBytes(m), blobs: []digest.Digest{digest.FromBytes(cfg), digest.FromBytes(layer)}}
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a bounded wait
	}
}

// tagArrives waits (30 s at most) until region base lists repo:tag at
// manifest want.
func tagArrives(t *testing.T, base, repo, tag string, want digest.Digest) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		if got := tagState(t, base, repo)[tag]; got != want.String() {
			return fmt.Errorf("%s has %s:%s at %q, want %s", base, repo, tag, got, want)
		}
		return nil
	})
}

// pullable checks that repo:tag is img in region base, with every blob.
func pullable(t *testing.T, base, repo, tag string, img image) error {
	code, h, _ := do(t, "GET", base+"/v2/"+repo+"/manifests/"+tag, "", nil)
	if code != 200 || h.Get("Docker-Content-Digest") != img.manifest.String() {
		return fmt.Errorf("%s %s:%s is %d %s", base, repo, tag, code, h.Get("Docker-Content-Digest"))
	}
	for _, b := range img.blobs {
		code, _, body := do(t, "GET", base+"/v2/"+repo+"/blobs/"+b.String(), "", nil)
		if code != 200 || digest.FromBytes(body) != b {
			t.Fatalf("invariant 2: %s served %s:%s but blob %s is %d", base, repo, tag, b, code)
		}
	}
	return nil
}

// holdsImage checks that region base holds repo:tag as img in its own
// storage, every blob verified: asked as a peer, a region never reads
// through, so an image it would only borrow fails.
func holdsImage(t *testing.T, reg *up.Registry, base, repo, tag string, img image) error {
	t.Helper()
	if code, body := asPeerWith(t, reg.Secret, "GET", base+"/v2/"+repo+"/manifests/"+tag); code != 200 || digest.FromBytes(body) != img.manifest {
		return fmt.Errorf("%s holds %s:%s? %d %s", base, repo, tag, code, digest.FromBytes(body))
	}
	for _, b := range img.blobs {
		if code, body := asPeerWith(t, reg.Secret, "GET", base+"/v2/"+repo+"/blobs/"+b.String()); code != 200 || digest.FromBytes(body) != b {
			return fmt.Errorf("%s holds %s:%s but not blob %s (%d)", base, repo, tag, b, code)
		}
	}
	return nil
}

func TestAnImagePushedInOneRegionArrivesCompleteInEveryRegion(t *testing.T) {
	reg := startRegistry(t)
	east, west, asia := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL, reg.ByName["southeastasia"].URL
	img := push(t, east, "team/app", "v1", "one", 300_000)
	for _, base := range []string{west, asia} {
		eventually(t, 30*time.Second, func() error { return holdsImage(t, reg, base, "team/app", "v1", img) })
		if err := pullable(t, base, "team/app", "v1", img); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("a tag deleted in another region is deleted everywhere", func(t *testing.T) {
		// Read-through answers GETs at once; the tag itself arrives by the
		// feed. Wait for it before deleting it there.
		tagArrives(t, west, "team/app", "v1", img.manifest)
		if code, _, _ := do(t, "DELETE", west+"/v2/team/app/manifests/v1", "", nil); code != 202 {
			t.Fatalf("delete: %d", code)
		}
		for _, base := range []string{east, asia} {
			eventually(t, 30*time.Second, func() error {
				if code, _, _ := do(t, "GET", base+"/v2/team/app/manifests/v1", "", nil); code != 404 {
					return fmt.Errorf("%s still has the tag: %d", base, code)
				}
				return nil
			})
		}
	})
	t.Run("a manifest deleted by digest is deleted everywhere", func(t *testing.T) {
		img2 := push(t, asia, "team/app", "v2", "two", 1000)
		eventually(t, 30*time.Second, func() error { return pullable(t, east, "team/app", "v2", img2) })
		if code, _, _ := do(t, "DELETE", east+"/v2/team/app/manifests/"+img2.manifest.String(), "", nil); code != 202 {
			t.Fatalf("delete: %d", code)
		}
		for _, base := range []string{west, asia} {
			eventually(t, 30*time.Second, func() error {
				if code, _, _ := do(t, "GET", base+"/v2/team/app/manifests/"+img2.manifest.String(), "", nil); code != 404 {
					return fmt.Errorf("%s still has the manifest: %d", base, code)
				}
				return nil
			})
		}
	})
}

// tagState is a region's tag -> digest map of repo.
func tagState(t *testing.T, base, repo string) map[string]string {
	code, _, body := do(t, "GET", base+"/v2/"+repo+"/tags/list", "", nil)
	state := map[string]string{}
	if code != 200 {
		return state
	}
	var list struct{ Tags []string }
	_ = json.Unmarshal(body, &list)
	for _, tag := range list.Tags {
		_, h, _ := do(t, "HEAD", base+"/v2/"+repo+"/manifests/"+tag, "", nil)
		state[tag] = h.Get("Docker-Content-Digest")
	}
	return state
}

func TestInvariant4ConcurrentPushesToEveryRegionConverge(t *testing.T) {
	reg := startRegistry(t)
	var wg sync.WaitGroup
	for i, r := range reg.Regions {
		wg.Go(func() {
			for j := range 5 {
				push(t, r.URL, "race", fmt.Sprintf("%s-%d", r.Name, j), fmt.Sprintf("%s-%d", r.Name, j), 2000)
				push(t, r.URL, "race", "shared", fmt.Sprintf("shared-%d-%d", i, j), 2000)
			}
		})
	}
	wg.Wait()
	eventually(t, 60*time.Second, func() error {
		states := make([]map[string]string, len(reg.Regions))
		for i, r := range reg.Regions {
			states[i] = tagState(t, r.URL, "race")
		}
		if len(states[0]) != 16 {
			return fmt.Errorf("eastus has %d tags, want 16", len(states[0]))
		}
		for i := 1; i < len(states); i++ {
			if fmt.Sprint(sorted(states[i])) != fmt.Sprint(sorted(states[0])) {
				return fmt.Errorf("%s differs from eastus:\n%v\n%v", reg.Regions[i].Name, sorted(states[i]), sorted(states[0]))
			}
		}
		return nil
	})
}

func sorted(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func sha256Hex(b []byte) string { return digest.FromBytes(b).Encoded() }

// TestReplicationOverSimulatedDistance replicates over the links `georeg
// up` simulates: the image arrives complete, and not sooner than one
// traversal of the eastus -> southeastasia link allows.
func TestReplicationOverSimulatedDistance(t *testing.T) {
	reg := startRegistry(t, true)
	east, asia := reg.ByName["eastus"].URL, reg.ByName["southeastasia"].URL
	start := time.Now()
	img := push(t, east, "far/app", "v1", "far", 1_000_000)
	tagArrives(t, asia, "far/app", "v1", img.manifest)
	link, _ := up.DefaultDistance("eastus", "southeastasia")
	if elapsed := time.Since(start); elapsed < link.Latency {
		t.Fatalf("arrived in %s, faster than the link's one-way latency %s", elapsed, link.Latency)
	}
	if err := pullable(t, asia, "far/app", "v1", img); err != nil {
		t.Fatal(err)
	}
}

// TestARegionAsksItsMeasuredNearestPeerFirst: southeastasia is configured
// with eastus before westeurope, but its link to eastus is slow (50 ms
// each way, unknown to the configuration) and its link to westeurope is
// loopback: once the round trips are measured, southeastasia's peers are
// in that order, the order its fetches and read-through ask in.
func TestARegionAsksItsMeasuredNearestPeerFirst(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := up.Config{DataDir: t.TempDir(), Regions: threeRegions()}
	cfg.Link = func(from, to, u string) (string, error) {
		if from != "southeastasia" || to != "eastus" {
			return u, nil
		}
		p, err := link.Start(ctx, strings.TrimPrefix(u, "http://"), link.Shape{Latency: 50 * time.Millisecond, Bandwidth: 100_000_000})
		if err != nil {
			return "", err
		}
		return "http://" + p.Addr(), nil
	}
	reg := runRegistry(t, cfg)
	t.Cleanup(cancel) // after the registry stops (cleanups run last first)
	rep := reg.ByName["southeastasia"].Node.Replicator()
	eventually(t, 30*time.Second, func() error {
		if got := rep.PeerOrder(); !slices.Equal(got, []string{"westeurope", "eastus"}) {
			return fmt.Errorf("southeastasia's peers, nearest first: %v", got)
		}
		return nil
	})
}

// TestReferrersReplicateWithTheirSubject: an artifact pushed with a subject
// in one region is listed by the referrers API in the others.
func TestReferrersReplicateWithTheirSubject(t *testing.T) {
	reg := startRegistry(t)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	img := push(t, east, "ref/app", "v1", "subject", 1000)
	empty := []byte("{}")
	if code, _, _ := do(t, "POST", east+"/v2/ref/app/blobs/uploads/?digest="+digest.FromBytes(empty).String(), "", empty); code != 201 {
		t.Fatal("empty config")
	}
	sbom := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sbom","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1}}`,
		digest.FromBytes(empty), img.manifest))
	if code, _, body := do(t, "PUT", east+"/v2/ref/app/manifests/"+digest.FromBytes(sbom).String(), "application/vnd.oci.image.manifest.v1+json", sbom); code != 201 {
		t.Fatalf("artifact: %d %s", code, body)
	}
	eventually(t, 30*time.Second, func() error {
		_, _, body := do(t, "GET", west+"/v2/ref/app/referrers/"+img.manifest.String(), "", nil)
		if !bytes.Contains(body, []byte("application/vnd.example.sbom")) {
			return fmt.Errorf("westeurope referrers: %s", body)
		}
		return nil
	})
}

// TestSettingsReplicateLastWriterWins: a registry setting changed in any
// region reaches every region; a delete too; two regions writing one key
// at once end with the same value everywhere.
func TestSettingsReplicateLastWriterWins(t *testing.T) {
	reg := startRegistry(t)
	ctx := t.Context()
	west, asia := reg.ByName["westeurope"].Node.Region, reg.ByName["southeastasia"].Node.Region
	if _, err := west.PutSetting(ctx, "replica", "brazilsouth", []byte(`{"endpoint":"http://127.0.0.1:5004"}`)); err != nil {
		t.Fatal(err)
	}
	everywhere := func(want string) error {
		for _, r := range reg.Regions {
			s, err := r.Node.Region.Setting(ctx, "replica", "brazilsouth")
			got := "<none>"
			if err == nil {
				got = string(s.Value)
			}
			if got != want {
				return fmt.Errorf("%s has %s, want %s", r.Name, got, want)
			}
		}
		return nil
	}
	eventually(t, 30*time.Second, func() error { return everywhere(`{"endpoint":"http://127.0.0.1:5004"}`) })

	// Concurrent writes of one key in two regions: one wins everywhere.
	var wg sync.WaitGroup
	for i, r := range []*up.Region{reg.ByName["eastus"], reg.ByName["southeastasia"]} {
		wg.Go(func() {
			if _, err := r.Node.Region.PutSetting(ctx, "replica", "brazilsouth", []byte(fmt.Sprintf(`{"writer":%d}`, i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	eventually(t, 30*time.Second, func() error {
		first, err := reg.Regions[0].Node.Region.Setting(ctx, "replica", "brazilsouth")
		if err != nil {
			return err
		}
		return everywhere(string(first.Value))
	})

	if _, err := asia.DeleteSetting(ctx, "replica", "brazilsouth"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error { return everywhere("<none>") })
}

// TestAnUploadSessionIsForwardedToItsRegion: the requests of one chunked
// upload sent to three different regions all land in the region that
// started it.
func TestAnUploadSessionIsForwardedToItsRegion(t *testing.T) {
	reg := startRegistry(t)
	east, west, asia := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL, reg.ByName["southeastasia"].URL
	data := bytes.Repeat([]byte("forwarded;"), 30_000)
	d := digest.FromBytes(data)
	code, h, _ := do(t, "POST", east+"/v2/fwd/app/blobs/uploads/", "", nil)
	loc := h.Get("Location")
	if code != 202 || !strings.Contains(loc, "/eastus.") {
		t.Fatalf("start: %d %s", code, loc)
	}
	half := len(data) / 2
	req, _ := http.NewRequest("PATCH", west+loc, bytes.NewReader(data[:half]))
	req.Header.Set("Content-Range", fmt.Sprintf("0-%d", half-1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("chunk through westeurope: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest("PUT", asia+loc+"?digest="+d.String(), bytes.NewReader(data[half:]))
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", half, len(data)-1))
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("close through southeastasia: %v %v", resp, err)
	}
	resp.Body.Close()
	if code, _, body := do(t, "GET", east+"/v2/fwd/app/blobs/"+d.String(), "", nil); code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("blob in eastus: %d", code)
	}
}

// TestAwaitReadyReportsEveryRegionOnce: a fresh registry's three regions
// are each reported Ready once.
func TestAwaitReadyReportsEveryRegionOnce(t *testing.T) {
	reg := startRegistry(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var got []string
	reg.AwaitReady(ctx, func(name string) { got = append(got, name) })
	slices.Sort(got)
	if want := []string{"eastus", "southeastasia", "westeurope"}; !slices.Equal(got, want) {
		t.Fatalf("reported %v, want %v each once", got, want)
	}
}
