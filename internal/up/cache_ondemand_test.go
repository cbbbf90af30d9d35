package up_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// TestAnOnDemandCachedImageKeepsItsLayersWhereItIsPulled: a rule with
// replicate on-demand, whose upstream every region pings as the rule
// arrives (so a cold pull pings it no more). An image pulled in eastus
// (manifest and every blob) is fetched from the upstream once; its manifest and tag reach
// every region (status says so, and that it is on demand), its layers
// only eastus and the region that fetched it. A region without them
// serves a pull by fetching them from a region that holds them (not the
// upstream), verified, and holds them after. A second image, pulled in
// eastus, is pulled in a region cut off from every other: its layers come
// from the upstream. Bad values of replicate are refused.
func TestAnOnDemandCachedImageKeepsItsLayersWhereItIsPulled(t *testing.T) {
	upstream := startUpstream(t, "", "")
	nginx := upstream.putSized(t, "library/nginx", "1.27", 3, 200_000)
	redis := upstream.putSized(t, "library/redis", "7", 2, 200_000)
	near := func(a, b string) (link.Shape, bool) { return link.Shape{Latency: time.Millisecond}, true }
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), Distance: near})
	east := reg.ByName["eastus"].URL
	pushPings := upstream.pings.Load() // the test's own pushes
	putCacheRule(t, reg, east, "library", `{"source":"http://`+upstream.addr+`/library/*","target":"hub/*","replicate":"on-demand"}`)
	if code, _, body := do(t, "GET", east+"/_georeg/v1/cache-rules/library", "", nil); code != 200 || !strings.Contains(string(body), `"replicate":"on-demand"`) {
		t.Fatalf("the rule: %d %s", code, body)
	}
	for _, bad := range []string{`"sometimes"`, `"ALL"`, `1`} {
		if code, _, body := do(t, "PUT", east+"/_georeg/v1/cache-rules/bad", "application/json",
			[]byte(`{"source":"docker.io/library/*","target":"other/*","replicate":`+bad+`}`)); code != 400 {
			t.Fatalf("replicate %s: %d %s, want 400", bad, code, body)
		}
	}
	if code, _, _ := do(t, "GET", east+"/_georeg/v1/cache-rules/bad", "", nil); code != 404 {
		t.Fatalf("a refused rule was stored: %d", code)
	}

	// Every region pings the rule's upstream as the rule arrives, so the
	// cold pull's first request to it is the manifest's.
	eventually(t, 30*time.Second, func() error {
		if n := upstream.pings.Load() - pushPings; n < int64(len(reg.Regions)) {
			return fmt.Errorf("the upstream was pinged %d times, want once by each region", n)
		}
		return nil
	})
	before, pings := upstream.blobGets.Load(), upstream.pings.Load()
	img := pullWhole(t, east, "hub/nginx", "1.27", nginx)
	if got := upstream.blobGets.Load() - before; got != int64(len(img.blobs)) {
		t.Fatalf("the upstream served %d blob GETs for an image of %d blobs, want one each", got, len(img.blobs))
	}
	if got := upstream.pings.Load() - pings; got != 0 {
		t.Fatalf("the cold pull pinged the upstream %d times: its ping was not kept warm", got)
	}
	layers := img.blobs[1:] // the config (small: it travels in the feed page) is held everywhere
	without := regionsWithout(t, reg, "hub/nginx", "1.27", img, layers)
	if len(without) == 0 {
		t.Fatal("every region holds the on-demand image's layers: they were replicated")
	}
	eventually(t, 30*time.Second, func() error { // the other regions' acknowledgements arrive
		if st := imageStatus(t, east, "hub/nginx", "1.27"); !st.OnDemand || !st.Complete {
			return fmt.Errorf("status %+v: want onDemand and complete (its manifest is in every region)", st)
		}
		return nil
	})

	// Pulled where its layers are not: from a region that holds them.
	other := without[0]
	before = upstream.blobGets.Load()
	pullWhole(t, reg.ByName[other].URL, "hub/nginx", "1.27", nginx)
	if err := holdsImage(t, reg, reg.ByName[other].URL, "hub/nginx", nginx.String(), img); err != nil {
		t.Fatalf("after its pull: %v", err)
	}
	if got := upstream.blobGets.Load() - before; got != 0 {
		t.Fatalf("a pull in %s asked the upstream %d times: its layers are in other regions", other, got)
	}

	// A region cut off from the others fetches the layers from the upstream.
	img2 := pullWhole(t, east, "hub/redis", "7", redis)
	without = regionsWithout(t, reg, "hub/redis", "7", img2, img2.blobs[1:])
	if len(without) == 0 {
		t.Fatal("every region holds the second image's layers")
	}
	alone := without[0]
	reg.Cut(alone, link.Reset)
	before = upstream.blobGets.Load()
	for _, b := range img2.blobs[1:] {
		code, _, body := do(t, "GET", reg.ByName[alone].URL+"/v2/hub/redis/blobs/"+b.String(), "", nil)
		if code != 200 || digest.FromBytes(body) != b {
			t.Fatalf("blob %s in %s, cut off from every region: %d %s", b, alone, code, body[:min(len(body), 300)])
		}
	}
	reg.Cut(alone, link.Healthy)
	if got := upstream.blobGets.Load() - before; got != int64(len(img2.blobs)-1) {
		t.Fatalf("the upstream served %d blob GETs to a region cut off, want %d", got, len(img2.blobs)-1)
	}
	if err := holdsImage(t, reg, reg.ByName[alone].URL, "hub/redis", redis.String(), img2); err != nil {
		t.Fatalf("after its pull from the upstream: %v", err)
	}
}

// pullWhole pulls repo:tag from base (its manifest, then each blob, as a
// client would) and checks each against want and its digest.
func pullWhole(t *testing.T, base, repo, tag string, want digest.Digest) image {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if code := resp.StatusCode; code != 200 || digest.FromBytes(m) != want {
		t.Fatalf("pull %s:%s from %s: %d %s", repo, tag, base, code, m[:min(len(m), 300)])
	}
	var parsed struct {
		Config struct{ Digest digest.Digest }
		Layers []struct{ Digest digest.Digest }
	}
	if err := json.Unmarshal(m, &parsed); err != nil {
		t.Fatal(err)
	}
	img := image{manifest: want, blobs: []digest.Digest{parsed.Config.Digest}}
	for _, l := range parsed.Layers {
		img.blobs = append(img.blobs, l.Digest)
	}
	for _, b := range img.blobs {
		if code, _, body := do(t, "GET", base+"/v2/"+repo+"/blobs/"+b.String(), "", nil); code != 200 || digest.FromBytes(body) != b {
			t.Fatalf("blob %s of %s:%s from %s: %d", b, repo, tag, base, code)
		}
	}
	return img
}

// regionsWithout waits until every region holds repo:tag's manifest and
// tag (asked as a peer, and with the config blob, which travels in the
// feed page), and returns the regions holding none of layers.
func regionsWithout(t *testing.T, reg *up.Registry, repo, tag string, img image, layers []digest.Digest) []string {
	t.Helper()
	var without []string
	for _, r := range reg.Regions {
		eventually(t, 30*time.Second, func() error {
			if code, body := asPeerWith(t, reg.Secret, "GET", r.URL+"/v2/"+repo+"/manifests/"+img.manifest.String()); code != 200 || digest.FromBytes(body) != img.manifest {
				return fmt.Errorf("%s has no manifest %s yet: %d", r.Name, img.manifest, code)
			}
			// The tag (a Docker manifest: asked with no Accept).
			resp, err := http.Head(r.URL + "/v2/" + repo + "/manifests/" + tag)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if got := resp.Header.Get("Docker-Content-Digest"); got != img.manifest.String() {
				return fmt.Errorf("%s has %s:%s at %q (%d)", r.Name, repo, tag, got, resp.StatusCode)
			}
			if code, _ := asPeerWith(t, reg.Secret, "HEAD", r.URL+"/v2/"+repo+"/blobs/"+img.blobs[0].String()); code != 200 {
				// What the region's replication says: a region that had
				// applied every record yet lacked the config is how a
				// snapshot join leaving out on-demand configs showed.
				var peers []string
				for _, p := range regionStatus(t, r.URL).Peers {
					peers = append(peers, fmt.Sprintf("%s: %s, applied %d of %d, parked %d, last error %q", p.Peer, p.State, p.Applied, p.Head, p.Parked, p.LastError))
				}
				return fmt.Errorf("%s has %s:%s but not its config: %d (%s)", r.Name, repo, tag, code, strings.Join(peers, "; "))
			}
			return nil
		})
		held := 0
		for _, l := range layers {
			if code, _ := asPeerWith(t, reg.Secret, "HEAD", r.URL+"/v2/"+repo+"/blobs/"+l.String()); code == 200 {
				held++
			}
		}
		switch held {
		case 0:
			without = append(without, r.Name)
		case len(layers):
		default:
			t.Fatalf("%s holds %d of the %d layers of %s:%s, none of which it pulled", r.Name, held, len(layers), repo, tag)
		}
	}
	if slices.Contains(without, "eastus") {
		t.Fatalf("eastus, where %s:%s was pulled, holds none of its layers", repo, tag)
	}
	return without
}

// imageStatus asks base where repo:ref is.
func imageStatus(t *testing.T, base, repo, ref string) mgmtapi.ImageStatus {
	t.Helper()
	var st mgmtapi.ImageStatus
	code, _, body := do(t, "GET", base+"/_georeg/v1/images/status?repository="+repo+"&reference="+ref, "", nil)
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil {
		t.Fatalf("status of %s:%s: %d %s", repo, ref, code, body)
	}
	return st
}

// TestARegionJoiningFromASnapshotKeepsTheSmallBlobsOfAnOnDemandImage: a
// region that follows the feeds holds an on-demand image's config (a small
// blob travels in its feed record, and is kept) but not its layers; a
// region that joins from a snapshot must hold the same, or a pull there
// reads its config through from another region while the others serve
// it at once (a race seen in TestAnOnDemandCachedImageKeepsItsLayersWhereItIsPulled
// when a region's first follower joined from a snapshot late, under load).
func TestARegionJoiningFromASnapshotKeepsTheSmallBlobsOfAnOnDemandImage(t *testing.T) {
	const secret = "join-ondemand-secret"
	upstream := startUpstream(t, "", "")
	nginx := upstream.putSized(t, "library/nginx", "1.27", 2, 200_000)
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: secret, Regions: threeRegions()})
	east := reg.ByName["eastus"].URL
	putCacheRule(t, reg, east, "library", `{"source":"http://`+upstream.addr+`/library/*","target":"hub/*","replicate":"on-demand"}`)
	img := pullWhole(t, east, "hub/nginx", "1.27", nginx)
	regionsWithout(t, reg, "hub/nginx", "1.27", img, img.blobs[1:]) // the others hold its manifest and config
	awaitReady(t, reg)

	brazil := startNode(t, "brazilsouth", func(c *config.Config) {
		c.Replication.Secret = secret
		c.Outbound.Allow = []string{"127.0.0.0/8"}
		for _, r := range reg.Regions {
			c.Replication.Peers = append(c.Replication.Peers, replicate.Peer{Name: r.Name, Endpoint: r.URL})
		}
	})
	var st replicate.Status
	eventually(t, 60*time.Second, func() error {
		if st = regionStatus(t, brazil); st.State != replicate.StateReady {
			return fmt.Errorf("brazilsouth is %s", st.State)
		}
		return nil
	})
	if st.Snapshot == nil || st.Snapshot.From == "" {
		t.Fatalf("brazilsouth did not join from a snapshot: %+v", st.Snapshot)
	}
	if code, body := asPeerWith(t, secret, "GET", brazil+"/v2/hub/nginx/manifests/"+img.manifest.String()); code != 200 || digest.FromBytes(body) != img.manifest {
		t.Fatalf("brazilsouth, joined from %s's snapshot, has no manifest %s: %d", st.Snapshot.From, img.manifest, code)
	}
	if code, _ := asPeerWith(t, secret, "HEAD", brazil+"/v2/hub/nginx/blobs/"+img.blobs[0].String()); code != 200 {
		t.Fatalf("brazilsouth, joined from %s's snapshot, lacks the on-demand image's config (a small blob every follower keeps): %d", st.Snapshot.From, code)
	}
	for _, l := range img.blobs[1:] {
		if code, _ := asPeerWith(t, secret, "HEAD", brazil+"/v2/hub/nginx/blobs/"+l.String()); code != 404 {
			t.Fatalf("brazilsouth holds layer %s of an on-demand image nobody pulled there: %d", l, code)
		}
	}
}
