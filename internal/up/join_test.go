package up_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// summaryRoot is a region's summary tree root (anti-entropy's): two
// regions with the same root hold the same tags, manifests and
// tombstones.
func summaryRoot(t *testing.T, secret, base string) string {
	t.Helper()
	code, out := asPeerWith(t, secret, http.MethodGet, base+"/_georeg/v1/summaries?tree=1")
	var tree struct{ Root string }
	if code != 200 || json.Unmarshal(out, &tree) != nil || tree.Root == "" {
		t.Fatalf("summary tree of %s: %d %s", base, code, out)
	}
	return tree.Root
}

// TestARegionJoinsFromASnapshotWhilePushesContinue: three regions hold
// images pushed in each, a tag moved and a manifest deleted; a fourth
// region joins while images keep being pushed to all three. It loads
// one region's snapshot (status says which) instead of replaying the
// feeds, turns Ready, and ends identical to the others: the same
// summaries, every image whole in its own storage, the deleted one
// deleted.
func TestARegionJoinsFromASnapshotWhilePushesContinue(t *testing.T) {
	const secret = "join-secret"
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: secret, Regions: threeRegions()})
	type pushed struct {
		repo, tag string
		img       image
	}
	var live []pushed
	for i := range 24 {
		r := reg.Regions[i%3]
		repo, tag := fmt.Sprintf("join/app%d", i%8), fmt.Sprintf("v%d", i)
		live = append(live, pushed{repo, tag, push(t, r.URL, repo, tag, fmt.Sprintf("join %d", i), 20_000+i)})
	}
	// A tag moved, in another region than its first push; a manifest
	// deleted (by digest: its tag goes with it).
	moved := push(t, reg.ByName["southeastasia"].URL, "join/app1", "v1", "moved", 30_000)
	live[1].img = moved
	deleted := live[2]
	if code, _, body := do(t, http.MethodDelete, reg.ByName["eastus"].URL+"/v2/"+deleted.repo+"/manifests/"+deleted.img.manifest.String(), "", nil); code != 202 {
		t.Fatalf("delete: %d %s", code, body)
	}
	live = append(live[:2], live[3:]...)
	converged := func(bases ...string) error {
		first := summaryRoot(t, secret, bases[0])
		for _, b := range bases[1:] {
			if got := summaryRoot(t, secret, b); got != first {
				return fmt.Errorf("%s's summary root %s, %s's %s", bases[0], first, b, got)
			}
		}
		return nil
	}
	bases := []string{reg.Regions[0].URL, reg.Regions[1].URL, reg.Regions[2].URL}
	eventually(t, 30*time.Second, func() error { return converged(bases...) })
	awaitReady(t, reg)

	started := time.Now()
	brazil := startNode(t, "brazilsouth", func(c *config.Config) {
		c.Replication.Secret = secret
		for _, r := range reg.Regions {
			c.Replication.Peers = append(c.Replication.Peers, replicate.Peer{Name: r.Name, Endpoint: r.URL})
		}
	})
	// Pushes go on in every region while it joins, until it is Ready
	// (bounded: at most 60 more).
	var st replicate.Status
	for i := 0; ; i++ {
		st = regionStatus(t, brazil)
		if st.State == replicate.StateReady {
			break
		}
		if i >= 60 || time.Since(started) > 60*time.Second {
			t.Fatalf("brazilsouth is %s after %s, waiting for %v", st.State, time.Since(started).Round(time.Millisecond), st.Waiting)
		}
		r := reg.Regions[i%3]
		repo, tag := fmt.Sprintf("join/live%d", i%5), fmt.Sprintf("l%d", i)
		live = append(live, pushed{repo, tag, push(t, r.URL, repo, tag, fmt.Sprintf("live %d", i), 15_000+i)})
	}
	t.Logf("brazilsouth Ready %s after it started; %d images pushed meanwhile; %+v", time.Since(started).Round(time.Millisecond), len(live)-23, st.Snapshot)
	if st.Snapshot == nil || st.Snapshot.From == "" || st.Snapshot.Manifests < 23 {
		t.Fatalf("brazilsouth did not join from a snapshot of the images held before it started: %+v", st.Snapshot)
	}
	eventually(t, 60*time.Second, func() error { return converged(append(bases, brazil)...) })
	for _, p := range live {
		if err := holdsImage(t, reg, brazil, p.repo, p.tag, p.img); err != nil {
			t.Fatal(err)
		}
	}
	if code, _ := asPeerWith(t, secret, http.MethodGet, brazil+"/v2/"+deleted.repo+"/manifests/"+deleted.img.manifest.String()); code != 404 {
		t.Fatalf("the manifest deleted before brazilsouth joined: %d there", code)
	}
}

// TestAJoinWhoseSnapshotHangsTakesAnotherRegionsSnapshot: the region a new
// region is configured with (eastus, behind a proxy) answers everything
// but its snapshot, which hangs. The new region's wait for it is bounded
// (its idle timeout), it says which snapshot failed and why, takes
// another region's (learned from eastus's settings), turns Ready, and
// ends identical to the others.
func TestAJoinWhoseSnapshotHangsTakesAnotherRegionsSnapshot(t *testing.T) {
	const secret = "join-hang-secret"
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: secret, Regions: threeRegions()})
	var images []image
	for i := range 9 {
		images = append(images, push(t, reg.Regions[i%3].URL, fmt.Sprintf("hang/app%d", i), "v1", fmt.Sprintf("hang %d", i), 20_000))
	}
	east := reg.ByName["eastus"]
	target, _ := url.Parse(east.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_georeg/v1/snapshot" {
			select { // hangs: no header, no byte
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	awaitReady(t, reg)
	eventually(t, 30*time.Second, func() error { // eastus knows every region, to tell the new one
		if s, err := east.Node.Region.Settings(t.Context(), replicate.ReplicaKind); err != nil || len(s) < 3 {
			return fmt.Errorf("eastus knows %d regions (%v)", len(s), err)
		}
		return nil
	})
	started := time.Now()
	brazil := startNode(t, "brazilsouth", func(c *config.Config) {
		c.Replication.Secret = secret
		c.Replication.IdleTimeout = time.Second
		c.Replication.Peers = []replicate.Peer{{Name: "eastus", Endpoint: srv.URL}}
	})
	var st replicate.Status
	eventually(t, 60*time.Second, func() error {
		if st = regionStatus(t, brazil); st.State != replicate.StateReady {
			return fmt.Errorf("brazilsouth is %s, waiting for %v; %+v", st.State, st.Waiting, st.Snapshot)
		}
		return nil
	})
	t.Logf("brazilsouth Ready %s after it started: %+v", time.Since(started).Round(time.Millisecond), st.Snapshot)
	if st.Snapshot == nil || st.Snapshot.From == "" || st.Snapshot.From == "eastus" || len(st.Snapshot.Failed) == 0 || !strings.HasPrefix(st.Snapshot.Failed[0], "eastus: ") {
		t.Fatalf("brazilsouth's join: %+v; want another region's snapshot, after eastus's failed", st.Snapshot)
	}
	bases := []string{reg.Regions[0].URL, reg.Regions[1].URL, reg.Regions[2].URL, brazil}
	eventually(t, 60*time.Second, func() error {
		first := summaryRoot(t, secret, bases[0])
		for _, b := range bases[1:] {
			if got := summaryRoot(t, secret, b); got != first {
				return fmt.Errorf("%s's summary root differs", b)
			}
		}
		return nil
	})
	for i, img := range images {
		if err := holdsImage(t, reg, brazil, fmt.Sprintf("hang/app%d", i), "v1", img); err != nil {
			t.Fatal(err)
		}
	}
}

// awaitReady waits (30 s at most) until every region of reg says Ready,
// as a front door's probes would have had them say before a region joins.
func awaitReady(t *testing.T, reg *up.Registry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	n := 0
	reg.AwaitReady(ctx, func(string) { n++ })
	if n != len(reg.Regions) {
		t.Fatalf("%d of %d regions Ready within 30 s", n, len(reg.Regions))
	}
}

// TestASettingChangedJustBeforeTheSnapshotReachesTheJoiningRegion: the
// new region reads eastus's settings, then its snapshot; between the two
// (the proxy does it as the snapshot is asked for) eastus's soft-delete
// policy changes. The snapshot's feed position is past that change, so
// the new region must have read the settings again: once it is Ready it
// holds the policy, not when anti-entropy comes round.
func TestASettingChangedJustBeforeTheSnapshotReachesTheJoiningRegion(t *testing.T) {
	const secret = "join-setting-secret"
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: secret, Regions: threeRegions()[:1]})
	east := reg.ByName["eastus"]
	push(t, east.URL, "setting/app", "v1", "setting", 10_000)
	target, _ := url.Parse(east.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_georeg/v1/snapshot" {
			if code, _, out := do(t, http.MethodPut, east.URL+"/_georeg/v1/policies/soft-delete", "application/json", []byte(`{"status":"enabled","days":9}`)); code != 200 {
				t.Errorf("policy: %d %s", code, out)
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	awaitReady(t, reg)
	brazil := startNode(t, "brazilsouth", func(c *config.Config) {
		c.Replication.Secret = secret
		c.Replication.Peers = []replicate.Peer{{Name: "eastus", Endpoint: srv.URL}}
	})
	var st replicate.Status
	eventually(t, 60*time.Second, func() error {
		if st = regionStatus(t, brazil); st.State != replicate.StateReady {
			return fmt.Errorf("brazilsouth is %s, waiting for %v; %+v", st.State, st.Waiting, st.Snapshot)
		}
		return nil
	})
	if st.Snapshot == nil || st.Snapshot.From != "eastus" {
		t.Fatalf("brazilsouth did not join from eastus's snapshot: %+v", st.Snapshot)
	}
	if _, _, out := do(t, http.MethodGet, brazil+"/_georeg/v1/policies/soft-delete", "", nil); !strings.Contains(string(out), `"days":9`) {
		t.Fatalf("brazilsouth, Ready, holds the soft-delete policy %s; eastus changed it to 9 days before its snapshot", out)
	}
}
