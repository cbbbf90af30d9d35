package up_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/node"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// TestARegionRegisteredInOneRegionIsFollowedByAll: a new region joins a
// running registry. It follows the existing regions (its configuration
// names them) and backfills what they hold; it is registered through
// eastus only, and every existing region learns of it through the
// replicated setting and follows it.
func TestARegionRegisteredInOneRegionIsFollowedByAll(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: "s3cr3t", Regions: []up.RegionSpec{
		{Name: "eastus", Listen: "127.0.0.1:0"}, {Name: "westeurope", Listen: "127.0.0.1:0"}}})
	east, west := reg.ByName["eastus"], reg.ByName["westeurope"]
	before := push(t, east.URL, "join/app", "before", "before", 20_000)

	// The new region, on its own listener, following both.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Region.Name, cfg.Region.DataDir = "brazilsouth", t.TempDir()
	cfg.HTTP.Listen = l.Addr().String()
	cfg.Replication.Secret = "s3cr3t"
	cfg.Replication.Peers = []replicate.Peer{{Name: "eastus", Endpoint: east.URL}, {Name: "westeurope", Endpoint: west.URL}}
	n, err := node.Open(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-served })
	brazil := "http://" + l.Addr().String()

	value, _ := json.Marshal(replicate.ReplicaSetting{Endpoint: brazil, RegionEndpointEnabled: true, Created: time.Now()})
	if _, err := east.Node.Region.PutSetting(t.Context(), replicate.ReplicaKind, "brazilsouth", value); err != nil {
		t.Fatal(err)
	}
	// Backfill: what eastus held before brazilsouth existed arrives.
	tagArrives(t, brazil, "join/app", "before", before.manifest)
	// Both existing regions follow brazilsouth: a push there reaches them.
	after := push(t, brazil, "join/app", "from-brazil", "from-brazil", 20_000)
	for _, r := range []*up.Region{east, west} {
		tagArrives(t, r.URL, "join/app", "from-brazil", after.manifest)
	}
}

// TestReplicationsAreManagedFromAnyRegion drives the management API: a
// replication registered through eastus is listed by westeurope, shown
// with its own status, switched off for routing through westeurope, and
// deleted through westeurope.
func TestReplicationsAreManagedFromAnyRegion(t *testing.T) {
	reg := startRegistry(t)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	asia := reg.ByName["southeastasia"].URL
	// Register southeastasia's endpoint under a second name: it answers,
	// but as southeastasia, so it gets no credential and its status says
	// why (peerauth).
	body := []byte(`{"endpoint":"` + asia + `"}`)
	if code, _, out := do(t, "PUT", east+"/_georeg/v1/replications/asia2", "application/json", body); code != 200 {
		t.Fatalf("create: %d %s", code, out)
	}
	type rep struct {
		Name                  string
		RegionEndpointEnabled bool
		Source                string
		Status                *struct{ State string }
	}
	find := func(base, name string) (*rep, error) {
		_, _, out := do(t, "GET", base+"/_georeg/v1/replications", "", nil)
		var all []rep
		if err := json.Unmarshal(out, &all); err != nil {
			return nil, fmt.Errorf("list: %v %s", err, out)
		}
		for _, r := range all {
			if r.Name == name {
				return &r, nil
			}
		}
		return nil, fmt.Errorf("%s does not list %s: %s", base, name, out)
	}
	eventually(t, 30*time.Second, func() error { _, err := find(west, "asia2"); return err })

	code, _, out := do(t, "GET", west+"/_georeg/v1/replications/asia2", "", nil)
	var shown rep
	if code != 200 || json.Unmarshal(out, &shown) != nil || shown.Source != "registered" || !strings.Contains(string(out), "is region southeastasia, not asia2") {
		t.Fatalf("show: %d %s", code, out)
	}

	if code, _, out := do(t, "PUT", west+"/_georeg/v1/replications/asia2", "application/json", []byte(`{"regionEndpointEnabled":false}`)); code != 200 {
		t.Fatalf("update: %d %s", code, out)
	}
	eventually(t, 30*time.Second, func() error {
		r, err := find(east, "asia2")
		if err != nil || r.RegionEndpointEnabled {
			return fmt.Errorf("eastus still routes to asia2: %+v %v", r, err)
		}
		return nil
	})

	if code, _, out := do(t, "DELETE", west+"/_georeg/v1/replications/asia2", "", nil); code != 200 {
		t.Fatalf("delete: %d %s", code, out)
	}
	eventually(t, 30*time.Second, func() error {
		if _, err := find(east, "asia2"); err == nil {
			return fmt.Errorf("eastus still lists asia2")
		}
		return nil
	})
	if code, _, _ := do(t, "DELETE", west+"/_georeg/v1/replications/asia2", "", nil); code != 404 {
		t.Fatalf("deleting twice: %d", code)
	}
	if code, _, _ := do(t, "PUT", west+"/_georeg/v1/replications/Bad_Name", "application/json", body); code != 400 {
		t.Fatalf("bad name: %d", code)
	}
}

// TestARegionIsSyncingUntilItHasHeardFromEveryPeer: a region whose peer
// cannot be reached is not Ready, however little it has to do.
func TestARegionIsSyncingUntilItHasHeardFromEveryPeer(t *testing.T) {
	link := &faultyLink{}
	link.set(func(*http.Request) bool { return true })
	reg := startLinked(t, link, []string{"westeurope"}, nil)
	for range 3 { // several looks: it must stay Syncing, not turn Ready by default
		_, _, out := do(t, "GET", reg.ByName["westeurope"].URL+"/_georeg/v1/status", "", nil)
		var st replicate.Status
		if err := json.Unmarshal(out, &st); err != nil || st.State != replicate.StateSyncing {
			t.Fatalf("westeurope cut off from eastus reports %s (%v)", out, err)
		}
	}
	// eastus hears from everyone: it gets Ready.
	eventually(t, 30*time.Second, func() error {
		_, _, out := do(t, "GET", reg.ByName["eastus"].URL+"/_georeg/v1/status", "", nil)
		var st replicate.Status
		if err := json.Unmarshal(out, &st); err != nil || st.State != replicate.StateReady {
			return fmt.Errorf("eastus: %s", out)
		}
		return nil
	})
}

// TestAConfiguredRegionCannotBeDeletedThroughTheAPI: a region from the
// configuration file is refused with a message that says where it is
// defined, also once its own registration (every region registers
// itself) has reached the region asked.
func TestAConfiguredRegionCannotBeDeletedThroughTheAPI(t *testing.T) {
	reg := startRegistry(t)
	eventually(t, 30*time.Second, func() error {
		_, err := reg.ByName["eastus"].Node.Region.Setting(t.Context(), replicate.ReplicaKind, "westeurope")
		return err
	})
	code, _, out := do(t, "DELETE", reg.ByName["eastus"].URL+"/_georeg/v1/replications/westeurope", "", nil)
	if c, _ := errorOf(out); code != 403 || c != "DENIED" || !bytes.Contains(out, []byte("configuration file")) {
		t.Fatalf("delete a configured region: %d %s", code, out)
	}
}

// startNode runs one more region, name, on its own listener with cfg's
// replication settings filled in by fill, until the test ends; it returns
// its URL.
func startNode(t *testing.T, name string, fill func(c *config.Config)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Region.Name, cfg.Region.DataDir = name, t.TempDir()
	cfg.HTTP.Listen = l.Addr().String()
	fill(&cfg)
	n, err := node.Open(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-served })
	return "http://" + l.Addr().String()
}

// regionStatus reads a region's replication status.
func regionStatus(t *testing.T, base string) replicate.Status {
	t.Helper()
	_, _, out := do(t, "GET", base+"/_georeg/v1/status", "", nil)
	var st replicate.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status of %s: %v %s", base, err, out)
	}
	return st
}

// TestAFourthRegionConfiguredWithOnePeerLearnsEveryRegion: images are
// pushed in each of three regions; a fourth region configured with only
// eastus as its peer learns the two others from eastus (the replicated
// replica settings every region writes for itself), follows all three,
// stays Syncing naming westeurope while it cannot reach it, and turns
// Ready holding every image of every region in its own storage.
func TestAFourthRegionConfiguredWithOnePeerLearnsEveryRegion(t *testing.T) {
	const secret = "membership-secret"
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: secret, Regions: threeRegions()})
	east := reg.ByName["eastus"]
	images := map[string]image{}
	for _, r := range reg.Regions {
		images[r.Name] = push(t, r.URL, "members/"+r.Name, "v1", r.Name, 100_000)
	}
	// Every region has registered itself and marked itself Ready, and
	// eastus knows it. The Ready mark must be in first: a region marking
	// itself rewrites its own setting, which would replace the one this
	// test writes for westeurope below.
	eventually(t, 30*time.Second, func() error {
		settings, err := east.Node.Region.Settings(t.Context(), replicate.ReplicaKind)
		if err != nil || len(settings) < 3 {
			return fmt.Errorf("eastus knows %d regions (%v)", len(settings), err)
		}
		for _, s := range settings {
			var v replicate.ReplicaSetting
			if err := json.Unmarshal(s.Value, &v); err != nil || !v.Ready {
				return fmt.Errorf("eastus has no Ready mark of %s yet (%v)", s.Name, err)
			}
		}
		return nil
	})
	// westeurope, as the new region will find it: behind a link that is
	// down for now.
	west := reg.ByName["westeurope"]
	wlink, err := link.Start(t.Context(), strings.TrimPrefix(west.URL, "http://"), link.Shape{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wlink.Wait)
	wlink.Set(link.Partition)
	value, _ := json.Marshal(replicate.ReplicaSetting{Endpoint: "http://" + wlink.Addr(), RegionEndpointEnabled: true, Ready: true, Created: time.Now()})
	if _, err := east.Node.Region.PutSetting(t.Context(), replicate.ReplicaKind, "westeurope", value); err != nil {
		t.Fatal(err)
	}

	started := time.Now()
	brazil := startNode(t, "brazilsouth", func(c *config.Config) {
		c.Replication.Secret = secret
		c.Replication.Peers = []replicate.Peer{{Name: "eastus", Endpoint: east.URL}}
	})
	// It follows all three, and waits for westeurope, saying why.
	eventually(t, 30*time.Second, func() error {
		st := regionStatus(t, brazil)
		if len(st.Peers) != 3 {
			return fmt.Errorf("brazilsouth follows %d regions: %+v", len(st.Peers), st.Peers)
		}
		for _, p := range st.Peers {
			if p.Peer != "westeurope" && p.State != replicate.PeerCaughtUp {
				return fmt.Errorf("%s is %s", p.Peer, p.State)
			}
		}
		if st.State != replicate.StateSyncing || len(st.Waiting) != 1 || !strings.HasPrefix(st.Waiting[0], "westeurope: unreachable") {
			return fmt.Errorf("brazilsouth is %s waiting for %v", st.State, st.Waiting)
		}
		return nil
	})
	wlink.Set(link.Healthy)
	eventually(t, 60*time.Second, func() error {
		if st := regionStatus(t, brazil); st.State != replicate.StateReady {
			return fmt.Errorf("brazilsouth is %s waiting for %v", st.State, st.Waiting)
		}
		return nil
	})
	t.Logf("brazilsouth Ready %s after it started (westeurope unreachable for part of it)", time.Since(started).Round(time.Millisecond))
	// Ready means every image of every region is here, in its own storage.
	for origin, img := range images {
		repo := "members/" + origin
		paths := []string{"/v2/" + repo + "/manifests/v1"}
		for _, b := range img.blobs {
			paths = append(paths, "/v2/"+repo+"/blobs/"+b.String())
		}
		for _, p := range paths {
			if code, _ := asPeerWith(t, secret, "HEAD", brazil+p); code != 200 {
				t.Errorf("brazilsouth is Ready without %s from %s: %d", p, origin, code)
			}
		}
	}
	// Registered through eastus (as `georeg replication create` does), it
	// is followed by every region: it replicates both ways with all.
	value, _ = json.Marshal(replicate.ReplicaSetting{Endpoint: brazil, RegionEndpointEnabled: true, Created: time.Now()})
	if _, err := east.Node.Region.PutSetting(t.Context(), replicate.ReplicaKind, "brazilsouth", value); err != nil {
		t.Fatal(err)
	}
	after := push(t, brazil, "members/brazil", "v1", "brazil", 10_000)
	for _, r := range reg.Regions {
		tagArrives(t, r.URL, "members/brazil", "v1", after.manifest)
	}
	// The registration through eastus did not carry its Ready mark; the
	// region puts it back, so every region counts it a member.
	eventually(t, 30*time.Second, func() error {
		_, _, out := do(t, "GET", reg.ByName["southeastasia"].URL+"/_georeg/v1/replications", "", nil)
		var all []struct{ Name, State string }
		_ = json.Unmarshal(out, &all)
		for _, r := range all {
			if r.Name == "brazilsouth" && r.State == replicate.StateReady {
				return nil
			}
		}
		return fmt.Errorf("southeastasia lists %s", out)
	})
}

// TestAJoiningRegionWaitsForAReadyRegionWhoseMarkHasNotArrived: the new
// region learns westeurope from eastus without westeurope's Ready mark
// (eastus's copy of the setting lacks it, and westeurope, cut off from
// eastus, cannot put it back), and westeurope's image reaches it slowly.
// It must not say Ready before it holds that image: westeurope's own feed
// says it has been Ready, so the new region waits for it.
func TestAJoiningRegionWaitsForAReadyRegionWhoseMarkHasNotArrived(t *testing.T) {
	const secret = "membership-secret"
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: secret, Regions: threeRegions(), Distance: up.Links(link.Shape{})})
	east, west := reg.ByName["eastus"], reg.ByName["westeurope"]
	images := map[string]image{}
	for _, r := range reg.Regions {
		images[r.Name] = push(t, r.URL, "joining/"+r.Name, "v1", r.Name, 100_000)
	}
	images["westeurope-big"] = push(t, west.URL, "joining/westeurope-big", "v1", "big", 3<<20)
	eventually(t, 30*time.Second, func() error {
		settings, err := east.Node.Region.Settings(t.Context(), replicate.ReplicaKind)
		if err != nil || len(settings) < 3 {
			return fmt.Errorf("eastus knows %d regions (%v)", len(settings), err)
		}
		for _, r := range reg.Regions {
			if st := regionStatus(t, r.URL); st.State != replicate.StateReady {
				return fmt.Errorf("%s is %s", r.Name, st.State)
			}
		}
		return nil
	})
	reg.Link("westeurope", "eastus").Set(link.Partition) // westeurope no longer hears eastus
	wlink, err := link.Start(t.Context(), strings.TrimPrefix(west.URL, "http://"), link.Shape{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wlink.Wait)
	wlink.Throttle(400_000) // the big image takes about 8 s to the new region
	value, _ := json.Marshal(replicate.ReplicaSetting{Endpoint: "http://" + wlink.Addr(), RegionEndpointEnabled: true, Created: time.Now()})
	if _, err := east.Node.Region.PutSetting(t.Context(), replicate.ReplicaKind, "westeurope", value); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	brazil := startNode(t, "brazilsouth", func(c *config.Config) {
		c.Replication.Secret = secret
		c.Replication.Peers = []replicate.Peer{{Name: "eastus", Endpoint: east.URL}}
	})
	eventually(t, 60*time.Second, func() error {
		if st := regionStatus(t, brazil); st.State != replicate.StateReady {
			return fmt.Errorf("brazilsouth is %s waiting for %v", st.State, st.Waiting)
		}
		return nil
	})
	t.Logf("brazilsouth Ready %s after it started", time.Since(started).Round(time.Millisecond))
	for name, img := range images {
		repo := "joining/" + name
		for _, p := range append([]string{"/v2/" + repo + "/manifests/v1"}, blobPaths(repo, img)...) {
			if code, _ := asPeerWith(t, secret, "HEAD", brazil+p); code != 200 {
				t.Errorf("brazilsouth is Ready without %s: %d", p, code)
			}
		}
	}
}

// blobPaths are the blob paths of img in repo.
func blobPaths(repo string, img image) []string {
	var out []string
	for _, b := range img.blobs {
		out = append(out, "/v2/"+repo+"/blobs/"+b.String())
	}
	return out
}
