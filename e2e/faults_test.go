package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/region"
)

// The fault-injection suite (issue: replication and the front door
// survive hung peers, stalled links and full disks). Each scenario runs
// three regions and a front door under pushers and pullers that verify
// every blob, injects its fault, kills the faulted region with SIGKILL
// halfway through and starts it again, heals, and then requires:
//
//   - 0 acknowledged pushes lost: every region holds every acknowledged
//     image in its own storage within convergeBound of the heal;
//   - 0 partial images: no region served a manifest and then failed one
//     of its blobs, or served wrong bytes;
//   - no request hung: every client request ended before clientTimeout;
//   - no client failure outside a disruption's window (requests in flight
//     in a region killed, stopped or filled, until the door drains it).
//
// `make test` runs each fault for a few seconds; `make chaos` sets
// GEOREG_CHAOS (e.g. 2m) and repeats fault, kill and heal cycles for that
// long per scenario. The figures are logged, one line per scenario.

const convergeBound = 90 * time.Second

// chaosLength is how long each scenario injects faults.
func chaosLength(t *testing.T) time.Duration {
	v := os.Getenv("GEOREG_CHAOS")
	if v == "" {
		return 4 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("GEOREG_CHAOS=%q: %v", v, err)
	}
	return d
}

// scenario is one fault. inject starts it and returns what heals it;
// victim is the region killed with SIGKILL halfway through each cycle.
type scenario struct {
	name   string
	victim string
	disks  map[string]int64 // regions on a small filesystem, by size for a 4 s fault
	setup  func(r *rig)
	inject func(r *rig, l *load) (heal func())
	// check, when set, runs while the fault holds, before the kill: the
	// fault did what the scenario is about.
	check func(t *testing.T, r *rig)
}

const faulted = "westeurope"

// stalled is the image the stall scenario pushed to eastus in its cycle;
// stallSeq numbers the cycles.
var (
	stalled  *image
	stallSeq int
	// stallStagingSize is the size of the layer's staging data in
	// westeurope when the link stalled (reported).
	stallStagingSize int64
)

var scenarios = []scenario{
	{
		// westeurope's link to eastus crawls (512 KiB/s); an 8 MiB layer
		// pushed to eastus is on its way to westeurope when the link
		// stalls for good. westeurope must get the layer while the link
		// still stalls, whatever the load made of the race: its fetch over
		// the link cut at the idle bound and resumed from southeastasia,
		// or fetched from southeastasia from the start (under load,
		// westeurope can learn of the layer after southeastasia holds it).
		// That a fetch cut mid-body moves on to the next holder is proved
		// without the race by TestAStalledLinkNeitherWedgesReplicationNorHangsAClient
		// (internal/up, mutate/10b); holding southeastasia's link until
		// westeurope had begun its fetch was tried and starves westeurope,
		// which learns eastus's records through southeastasia when its own
		// crawling link is full.
		name: "stall mid-blob", victim: faulted,
		inject: func(r *rig, l *load) func() {
			lk := r.links[faulted]["eastus"]
			lk.Throttle(512 << 10) // every cycle: a heal lifts it
			stallSeq++             // a tag of its own each cycle (p-1, p-2, ...)
			stalled = l.pushTo(l.loadClient("127.0.0.1"), "http://"+r.regions["eastus"].addr, -stallSeq, 8<<20)
			if stalled == nil {
				r.t.Fatal("the 8 MiB push to eastus failed")
			}
			// The layer is on its way: its fetch's staging data in
			// westeurope holds bytes, or westeurope holds it already.
			staging := filepath.Join(r.regions[faulted].data, "content", "uploads", region.FetchStagingID(stalled.blobs[1])+".data")
			layerPath := stalled.paths()[len(stalled.paths())-1]
			waitFor(r.t, 20*time.Second, func() error {
				if fi, err := os.Stat(staging); err == nil && fi.Size() > 0 {
					return nil
				}
				if holds(r.t, r.regions[faulted].addr, layerPath) {
					return nil
				}
				return errors.New("no byte of the layer landed in westeurope")
			})
			// The stall disrupts what crosses the link: a read-through of a
			// blob only eastus holds yet, begun through westeurope, is cut
			// at the stall bound when no other region can finish it.
			l.disrupt()
			lk.Set(link.Stall)
			stallStagingSize = -1
			if fi, err := os.Stat(staging); err == nil {
				stallStagingSize = fi.Size()
			}
			return r.heal
		},
		check: func(t *testing.T, r *rig) {
			key := `georeg_replication_fetch_failures_total{peer="eastus",reason="stalled",region="westeurope"}`
			defer func() {
				t.Logf("stall mid-blob: the layer's staging in westeurope held %d bytes at the stall; %s = %v",
					stallStagingSize, key, metricsOf(t, r.regions[faulted].addr)[key])
			}()
			waitFor(t, 30*time.Second, func() error {
				for _, p := range stalled.paths() {
					if !holds(t, r.regions[faulted].addr, p) {
						return fmt.Errorf("westeurope does not hold %s yet (the link to eastus stalls)", p)
					}
				}
				return nil
			})
		},
	},
	{
		name: "black hole", victim: faulted,
		inject: func(r *rig, l *load) func() {
			r.cut(faulted, link.BlackHole)
			return r.heal
		},
	},
	{
		// Every link in the mesh resets every connection, over and over.
		name: "reset storm", victim: faulted,
		inject: func(r *rig, l *load) func() {
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ctx.Err() == nil && i < 100_000; i++ {
					for _, name := range rigRegions {
						r.cut(name, link.Reset)
					}
					time.Sleep(100 * time.Millisecond) // the storm's beat
					r.heal()
					time.Sleep(200 * time.Millisecond)
				}
			})
			return func() { cancel(); wg.Wait(); r.heal() }
		},
	},
	{
		name: "partition 2|1", victim: faulted,
		inject: func(r *rig, l *load) func() {
			r.cut(faulted, link.Partition)
			return r.heal
		},
	},
	{
		// westeurope hangs (SIGSTOP): its clients go elsewhere; eastus is
		// killed with SIGKILL meanwhile, so southeastasia alone serves.
		name: "region SIGSTOP", victim: "eastus",
		inject: func(r *rig, l *load) func() {
			l.setSkip(faulted, true)
			l.disrupt()
			r.signal(faulted, syscall.SIGSTOP)
			return func() {
				r.signal(faulted, syscall.SIGCONT)
				l.setSkip(faulted, false)
			}
		},
	},
	{
		// westeurope's disk fills while it replicates 4 MiB layers.
		name: "disk full in a replica", victim: faulted,
		disks: map[string]int64{faulted: 256 << 20},
		inject: func(r *rig, l *load) func() {
			stop := watchFull(r, l, faulted)
			l.disrupt()
			r.disks[faulted].fill(r.t, 24<<20)
			return func() { r.disks[faulted].release(r.t); stop() }
		},
		check: func(t *testing.T, r *rig) { pullsOnly(t, r, faulted) },
	},
	{
		// eastus's disk is full: pushes of its clients go elsewhere.
		name: "disk full where pushed", victim: "eastus",
		disks: map[string]int64{"eastus": 256 << 20},
		inject: func(r *rig, l *load) func() {
			stop := watchFull(r, l, "eastus")
			l.disrupt()
			r.disks["eastus"].fill(r.t, 8<<20)
			return func() { r.disks["eastus"].release(r.t); stop() }
		},
		check: func(t *testing.T, r *rig) { pullsOnly(t, r, "eastus") },
	},
}

// pullsOnly waits until `georeg replication list` and the dashboard,
// both through the door, show region name as taking pulls only, with the
// reason, and the others as taking pushes.
func pullsOnly(t *testing.T, r *rig, name string) {
	t.Helper()
	waitFor(t, 20*time.Second, func() error {
		out := georeg(t, "replication", "list", "--registry", "http://"+r.door.addr, "-o", "tsv")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Split(line, "\t")
			if len(f) < 6 {
				return fmt.Errorf("replication list: %q", line)
			}
			want := "yes"
			if f[0] == name {
				want = "no, pulls only: " // and the reason
			}
			if !strings.HasPrefix(f[5], want) || (f[0] == name && len(f[5]) == len(want)) {
				return fmt.Errorf("replication list shows %s pushes %q", f[0], f[5])
			}
		}
		resp, err := http.Get("http://" + r.door.addr + "/_georeg/v1/dashboard")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var d struct {
			Regions []struct{ Name, Pushes, Error string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			return err
		}
		for _, reg := range d.Regions {
			if want := reg.Name == name; (reg.Pushes == "pulls only") != want || (want && reg.Error == "") {
				return fmt.Errorf("the dashboard shows %s pushes %q (%q)", reg.Name, reg.Pushes, reg.Error)
			}
		}
		return nil
	})
}

// watchFull notes a disruption when region name reports itself not
// writable (its pushes answer STORAGE_FULL until the door routes them
// elsewhere).
func watchFull(r *rig, l *load, name string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		was := true
		c := &http.Client{Timeout: 2 * time.Second}
		for i := 0; ctx.Err() == nil && i < 1_000_000; i++ {
			var st struct{ Writable *bool }
			if resp, err := c.Get("http://" + r.regions[name].addr + "/_georeg/v1/status"); err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				if now := st.Writable == nil || *st.Writable; now != was {
					if !now {
						l.disrupt()
					}
					r.t.Logf("%s writable: %v", name, now)
					was = now
				}
			}
			time.Sleep(50 * time.Millisecond) // poll interval of a bounded watch
		}
	})
	return func() { cancel(); wg.Wait() }
}

func TestFaultInjection(t *testing.T) {
	length := chaosLength(t)
	var lines []string
	for _, sc := range scenarios {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			lines = append(lines, runScenario(t, sc, length))
		})
	}
	t.Logf("fault-injection figures (faults for %s each):\n%s", length, strings.Join(lines, "\n"))
}

// loadRate bounds the bytes the load pushes per second (load.run paces
// its pushers to it: about 26 pushes a second of 0.9 MiB on average): a
// disk sized for a brief fault grows by this much per second of a longer
// one, so that what is acknowledged fits once space is back.
const loadRate = 24 << 20

func runScenario(t *testing.T, sc scenario, length time.Duration) string {
	disks := map[string]int64{}
	for name, size := range sc.disks {
		disks[name] = size + int64(max(0, length-4*time.Second)/time.Second)*loadRate
	}
	r := startRig(t, disks)
	if sc.setup != nil {
		sc.setup(r)
	}
	l := newLoad(r, "chaos/"+strings.ToLower(strings.NewReplacer(" ", "-", "|", "-").Replace(sc.name)))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { l.run(ctx, 2, 2) })
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(time.Second) // load before the fault
	cycle := min(length, 10*time.Second)
	var healedAt time.Time
	for start := time.Now(); time.Since(start) < length; {
		heal := sc.inject(r, l)
		time.Sleep(cycle / 2) // the fault holds
		if sc.check != nil {
			sc.check(t, r)
		}
		l.disrupt()
		r.restart(sc.victim)
		time.Sleep(cycle / 2)
		heal()
		healedAt = time.Now()
		if time.Since(start) < length {
			time.Sleep(3 * time.Second) // healthy between cycles
		}
	}
	time.Sleep(time.Second) // load after the heal
	cancel()
	wg.Wait()
	_, missing := r.converge(l.images(), convergeBound)
	took := time.Since(healedAt)
	line := l.report(sc.name, took, len(missing))
	t.Log(line)
	if len(missing) > 0 {
		t.Errorf("%d acknowledged pushes not in every region %s after the heal: %s", len(missing), convergeBound, firstFew(missing))
	}
	if len(l.partial) > 0 {
		t.Errorf("%d partial images served: %s", len(l.partial), firstFew(l.partial))
	}
	if len(l.hung) > 0 {
		t.Errorf("%d requests hung: %s", len(l.hung), firstFew(l.hung))
	}
	if failed, _ := l.unexcused(); len(failed) > 0 {
		t.Errorf("%d client failures outside a disruption's window: %s", len(failed), firstFew(failed))
	}
	if l.pushes == 0 || l.pulls == 0 {
		t.Errorf("the load did nothing (%d pushes, %d pulls): the scenario proves nothing", l.pushes, l.pulls)
	}
	return line
}
