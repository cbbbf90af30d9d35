package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type replStatus struct {
	Name   string
	State  string
	Status *struct {
		State    string
		Progress struct{ Objects, ObjectsTotal, Bytes, BytesTotal int64 }
		Peers    []struct {
			Peer          string
			Applied, Head int64
		}
	}
}

// show returns a region's status as `georeg replication show` reports it.
func show(t *testing.T, registry, name string) (*replStatus, error) {
	st, err := showState(t, registry, name)
	if err == nil && st.Status == nil {
		err = fmt.Errorf("show %s: no status: %+v", name, st)
	}
	return st, err
}

// showState is show without requiring the region to answer.
func showState(t *testing.T, registry, name string) (*replStatus, error) {
	out, err := runErr(t, georegBin, "replication", "show", name, "--registry", "http://"+registry, "--output", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var st replStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("show %s: %v %s", name, err, out)
	}
	return &st, nil
}

// TestAFourthRegionBackfillsEverythingAndResumesAfterKill9 adds a region
// to a running three-region registry holding 200 images: it reaches Ready
// holding everything, its progress never goes backwards, and a kill -9 in
// the middle of the backfill resumes from where it was.
func TestAFourthRegionBackfillsEverythingAndResumesAfterKill9(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope", "southeastasia")
	names := []string{"eastus", "westeurope", "southeastasia"}
	want := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			for j := range 67 {
				tag := fmt.Sprintf("%s-%02d", n, j)
				d := pushImage(t, regions[n].addr, "fill/app", tag, fmt.Sprintf("%d-%d-backfill", i, j))
				mu.Lock()
				want[tag] = d.String()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(want) < 200 {
		t.Fatalf("pushed %d images", len(want))
	}

	// The fourth region follows the three; it is registered through
	// eastus, so all three follow it too.
	var peers []peer
	for _, n := range names {
		peers = append(peers, peer{n, regions[n].addr})
	}
	addr := freeAddr(t)
	brazil := startRegion(t, t.TempDir(), "brazilsouth", addr, peers)
	run(t, georegBin, "replication", "create", "--registry", "http://"+regions["eastus"].addr,
		"--name", "brazilsouth", "--endpoint", "http://"+addr)

	applied := map[string]int64{} // the most seen per peer: never to go down
	var bytes int64
	check := func(st *replStatus) {
		for _, p := range st.Status.Peers {
			if p.Applied < applied[p.Peer] {
				t.Fatalf("progress went backwards for %s: %d after %d", p.Peer, p.Applied, applied[p.Peer])
			}
			applied[p.Peer] = p.Applied
		}
		if st.Status.Progress.Bytes < bytes {
			t.Fatalf("byte progress went backwards: %d after %d", st.Status.Progress.Bytes, bytes)
		}
		bytes = st.Status.Progress.Bytes
	}
	// Kill it once it has applied something but not everything.
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := show(t, addr, "brazilsouth")
		if err == nil {
			check(st)
			var done, total int64
			for _, p := range st.Status.Peers {
				done, total = done+p.Applied, total+p.Head
			}
			if done > 0 {
				t.Logf("killing brazilsouth at %d of %d events", done, total)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("brazilsouth never started its backfill")
		}
		time.Sleep(5 * time.Millisecond) // poll interval of a bounded wait
	}
	brazil.kill9()
	brazil.start()

	deadline = time.Now().Add(120 * time.Second)
	for {
		st, err := show(t, addr, "brazilsouth")
		if err == nil {
			check(st) // after the restart too: it resumed, it did not start over
			if st.Status.State == "Ready" {
				p := st.Status.Progress
				if p.Objects != p.ObjectsTotal || p.Bytes != p.BytesTotal || p.BytesTotal == 0 {
					t.Fatalf("Ready with progress %+v", p)
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("brazilsouth not Ready after 120 s: %v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}
	got, err := tags(t, addr, "fill/app")
	if err != nil || fmt.Sprint(sortedMap(got)) != fmt.Sprint(sortedMap(want)) {
		t.Fatalf("brazilsouth Ready with %d of %d images (%v)", len(got), len(want), err)
	}
	// The three follow it: a push there reaches them.
	d := pushImage(t, addr, "fill/app", "from-brazil", "from-brazil")
	want["from-brazil"] = d.String()
	converged(t, regions, "fill/app", want, 60*time.Second)

	// It announces itself Ready (a setting that replicates): down now, it
	// is Down, not Creating. The plain list shows the mark eastus holds
	// (`replication list` asks each region live, so it shows Ready before
	// the mark has arrived).
	east := regions["eastus"].addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		var got []listed
		err := getJSON("http://"+east+"/_georeg/v1/replications", &got)
		if err == nil && slices.ContainsFunc(got, func(l listed) bool { return l.Name == "brazilsouth" && l.State == "Ready" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("eastus does not hold brazilsouth's Ready mark: %+v %v", got, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}
	brazil.kill9()
	if st, err := showState(t, east, "brazilsouth"); err != nil || st.State != "Down" {
		t.Fatalf("a Ready region that is down shows as %+v (%v), want Down", st, err)
	}
}

type listed struct {
	Name                  string
	RegionEndpointEnabled bool
	State                 string // of a registered region: Creating, or Ready once it announced itself
}

func list(t *testing.T, registry string) (map[string]listed, error) {
	out, err := runErr(t, georegBin, "replication", "list", "--registry", "http://"+registry, "--output", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var all []listed
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		return nil, err
	}
	m := map[string]listed{}
	for _, r := range all {
		m[r.Name] = r
	}
	return m, nil
}

// TestManagementWorksWhileARegionIsDown: with eastus down, a replica is
// added through westeurope; eastus learns of it when it returns. There is
// no home region.
func TestManagementWorksWhileARegionIsDown(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope", "southeastasia")
	east, west := regions["eastus"], regions["westeurope"]
	east.kill9()
	run(t, georegBin, "replication", "create", "--registry", "http://"+west.addr,
		"--name", "brazilsouth", "--endpoint", "http://127.0.0.1:1")
	if st, err := showState(t, west.addr, "brazilsouth"); err != nil || st.State != "Creating" {
		t.Fatalf("a registered region that never answered shows as %+v (%v), want Creating", st, err)
	}
	east.start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := list(t, east.addr)
		if err == nil && got["brazilsouth"].Name == "brazilsouth" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("eastus never learned of brazilsouth: %v %v", got, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}
}

// TestRoutingOffChangesEveryRegionAndDataKeepsSyncing: turning routing to
// westeurope off through southeastasia shows in every region, and images
// pushed elsewhere keep arriving in westeurope.
func TestRoutingOffChangesEveryRegionAndDataKeepsSyncing(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope", "southeastasia")
	run(t, georegBin, "replication", "update", "westeurope", "--region-endpoint-enabled", "false",
		"--registry", "http://"+regions["southeastasia"].addr)
	for name, s := range regions {
		deadline := time.Now().Add(60 * time.Second)
		for {
			got, err := list(t, s.addr)
			if err == nil && got["westeurope"].Name == "westeurope" && !got["westeurope"].RegionEndpointEnabled {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still routes to westeurope: %v %v", name, got, err)
			}
			time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
		}
	}
	d := pushImage(t, regions["eastus"].addr, "routing/app", "v1", "routing-off")
	converged(t, regions, "routing/app", map[string]string{"v1": d.String()}, 60*time.Second)
}

// TestDeleteWithPurgeRetiresTheRegion: a region deleted with --purge
// loses its data, follows nobody (so nothing comes back), stays so after
// a restart, and leaves every other region's view.
func TestDeleteWithPurgeRetiresTheRegion(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope")
	d := pushImage(t, regions["eastus"].addr, "purge/app", "v1", "purge")
	addr := freeAddr(t)
	brazil := startRegion(t, t.TempDir(), "brazilsouth", addr, []peer{{"eastus", regions["eastus"].addr}})
	run(t, georegBin, "replication", "create", "--registry", "http://"+regions["westeurope"].addr, "--name", "brazilsouth", "--endpoint", "http://"+addr)
	converged(t, map[string]*server{"brazilsouth": brazil}, "purge/app", map[string]string{"v1": d.String()}, 60*time.Second)
	for deadline := time.Now().Add(30 * time.Second); ; { // created through westeurope: eastus learns it by replication
		if got, err := list(t, regions["eastus"].addr); err == nil && got["brazilsouth"].Name != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("eastus never learned of brazilsouth")
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}

	run(t, georegBin, "replication", "delete", "brazilsouth", "--purge", "--registry", "http://"+regions["eastus"].addr)
	retired := func() error {
		st, err := show(t, addr, "brazilsouth")
		if err != nil {
			return err
		}
		if len(st.Status.Peers) != 0 {
			return fmt.Errorf("brazilsouth still follows %d peers", len(st.Status.Peers))
		}
		if code, _ := status(t, "GET", "http://"+addr+"/v2/purge/app/tags/list", nil, nil); code != 404 {
			return fmt.Errorf("brazilsouth still has purge/app: %d", code)
		}
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for err := retired(); err != nil; err = retired() {
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}
	brazil.kill9()
	brazil.start()
	deadline = time.Now().Add(30 * time.Second)
	for err := retired(); err != nil; err = retired() {
		if time.Now().After(deadline) {
			t.Fatalf("after a restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}
	for name, s := range regions {
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := list(t, s.addr)
			if err == nil && got["brazilsouth"].Name == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still lists brazilsouth", name)
			}
			time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
		}
	}
}

// TestCreateWaitFailsFastOnAWrongSecret: a region started with another
// replication secret is registered with --wait: the command exits
// non-zero within seconds saying the region did not prove its identity
// and naming the secret, instead of showing progress until its timeout.
func TestCreateWaitFailsFastOnAWrongSecret(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope")
	east := regions["eastus"].addr
	addr := freeAddr(t)
	startRegionWithSecret(t, t.TempDir(), "brazilsouth", addr, []peer{{"eastus", east}}, "not-the-registry-secret")
	start := time.Now()
	out, err := runErr(t, georegBin, "replication", "create", "--registry", east, "--name", "brazilsouth",
		"--endpoint", "http://"+addr, "--wait", "--timeout", "2m")
	took := time.Since(start)
	if err == nil || !strings.Contains(out, "did not prove its identity") || !strings.Contains(out, "replication secret") {
		t.Fatalf("create --wait with a wrong secret: %v\n%s", err, out)
	}
	t.Logf("failed after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(out))
}

// TestOneCommandAddsARegion: `georeg serve --region brazilsouth --join
// URL --replication-secret-file F`, with no configuration file, makes a
// new region of a running registry: it backfills every image, reports
// Ready, every region lists it, and a push there reaches them. With the
// wrong secret the command exits at once naming UNAUTHORIZED.
func TestOneCommandAddsARegion(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope")
	want := map[string]string{}
	for i := range 10 {
		tag := fmt.Sprintf("v%d", i)
		want[tag] = pushImage(t, regions["westeurope"].addr, "join/app", tag, "join-"+tag).String()
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("e2e-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte("not-it\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	east := "http://" + regions["eastus"].addr
	addr := freeAddr(t)
	start := time.Now()
	if out, err := runErr(t, georegBin, "serve", "--region", "brazilsouth", "--listen", addr, "--data", filepath.Join(dir, "bad"),
		"--join", east, "--replication-secret-file", wrong); err == nil || !strings.Contains(out, "did not prove its identity") || time.Since(start) > 30*time.Second {
		t.Fatalf("--join with a wrong secret (after %s): %v\n%s", time.Since(start), err, out)
	}
	if got, err := list(t, regions["eastus"].addr); err != nil || got["brazilsouth"].Name != "" {
		t.Fatalf("a join refused for its secret registered the region: %v %v", got, err)
	}

	brazil := &server{t: t, addr: addr, data: filepath.Join(dir, "brazilsouth"), args: []string{"--region", "brazilsouth", "--listen", addr,
		"--data", filepath.Join(dir, "brazilsouth"), "--join", east, "--replication-secret-file", secret, "--log-level", "warn"}}
	start = time.Now()
	brazil.start()
	t.Cleanup(brazil.kill)
	t.Logf("brazilsouth serving %s after its start", time.Since(start).Round(time.Millisecond))
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := show(t, addr, "brazilsouth")
		if err == nil && st.Status.State == "Ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("brazilsouth not Ready 60 s after joining: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}
	t.Logf("brazilsouth Ready %s after its start", time.Since(start).Round(time.Millisecond))
	if got, err := tags(t, addr, "join/app"); err != nil || fmt.Sprint(sortedMap(got)) != fmt.Sprint(sortedMap(want)) {
		t.Fatalf("brazilsouth Ready with %v (%v), want %v", got, err, want)
	}
	for name, s := range regions {
		for deadline := time.Now().Add(30 * time.Second); ; {
			got, err := list(t, s.addr)
			if err == nil && got["brazilsouth"].Name == "brazilsouth" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not list brazilsouth: %v %v", name, got, err)
			}
			time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
		}
	}
	t.Logf("every region lists brazilsouth %s after its start", time.Since(start).Round(time.Millisecond))
	want["from-brazil"] = pushImage(t, addr, "join/app", "from-brazil", "from-brazil").String()
	converged(t, regions, "join/app", want, 60*time.Second)
	t.Logf("its push everywhere %s after its start", time.Since(start).Round(time.Millisecond))
}
