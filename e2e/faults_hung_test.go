package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hungFor is how long the hung-region test keeps westeurope stopped:
// long enough past rigDrained for the door's steady state to show.
const hungFor = rigDrained + 8*time.Second

// replicatedWithin bounds how long after its acknowledgement an image
// pushed to a region may still be only there (replication on loopback
// takes milliseconds; a 4 MiB layer under load well under a second): a
// pull of an image the hung region acknowledged less than this before it
// hung cannot be served by any region, and is not the door's failure.
const replicatedWithin = 2 * time.Second

// probeBound is the door's probe timeout: a region whose own health takes
// longer than this to answer is drained by the door, so healthy regions
// must answer within it whatever a peer does.
const probeBound = 2 * time.Second

// TestAHungRegionDoesNotTakeTheDoorDown: westeurope hangs (SIGSTOP) under
// a pushing and pulling load, for longer than the door takes to drain it.
// Throughout, each healthy region's /readyz and status answer within the
// door's probe timeout (a region's health is its own, never its peers').
// From rigDrained after the hang began until it ends, no push or pull
// through the door fails, and the management API and the dashboard answer
// through the door, the dashboard showing westeurope down and the others
// up. After the region resumes, every acknowledged image reaches every
// region.
func TestAHungRegionDoesNotTakeTheDoorDown(t *testing.T) {
	r := startRig(t, nil)
	l := newLoad(r, "hung/door")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { l.run(ctx, 2, 2) })
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(time.Second) // load before the hang

	l.setSkip(faulted, true)
	hungAt := time.Now()
	r.signal(faulted, syscall.SIGSTOP)
	resumed := false
	resume := func() {
		if !resumed {
			r.signal(faulted, syscall.SIGCONT)
			resumed = true
		}
	}
	defer resume()

	var problems []string
	sawDown := false
	c := &http.Client{Timeout: clientTimeout}
	get := func(url string) (int, []byte, time.Duration, error) {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return 0, nil, time.Since(start), err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, body, time.Since(start), err
	}
	for i := 0; time.Since(hungAt) < hungFor && i < 1000; i++ {
		for _, name := range rigRegions {
			if name == faulted {
				continue
			}
			for _, path := range []string{"/readyz", "/_georeg/v1/status"} {
				code, body, took, err := get("http://" + r.regions[name].addr + path)
				if err != nil || code != 200 || took > probeBound {
					problems = append(problems, fmt.Sprintf("%s %s while westeurope hangs: %d in %s %v %.200s", name, path, code, took.Round(time.Millisecond), err, body))
				}
			}
		}
		drained := time.Since(hungAt) > rigDrained
		for _, path := range []string{"/_georeg/v1/dashboard", "/_georeg/v1/replications", "/_georeg/v1/regions", "/ui/"} {
			code, body, took, err := get("http://" + r.door.addr + path)
			if drained && (err != nil || code != 200) {
				problems = append(problems, fmt.Sprintf("door %s %s after the hang began: %d in %s %v %.200s", path, time.Since(hungAt).Round(time.Millisecond), code, took.Round(time.Millisecond), err, body))
			}
			if drained && path == "/_georeg/v1/dashboard" && code == 200 {
				var d struct {
					Regions []struct{ Name, State, Routed string }
				}
				if err := json.Unmarshal(body, &d); err != nil {
					t.Fatal(err)
				}
				for _, reg := range d.Regions {
					switch {
					case reg.Name == faulted && reg.State == "Down" && reg.Routed == "off: down":
						sawDown = true
					case reg.Name == faulted && reg.State == "Down":
						problems = append(problems, fmt.Sprintf("the dashboard shows westeurope Down but the door sending it %q", reg.Routed))
					case reg.Name != faulted && reg.State != "Ready":
						problems = append(problems, fmt.Sprintf("the dashboard shows %s %s while only westeurope hangs", reg.Name, reg.State))
					}
				}
			}
		}
		time.Sleep(250 * time.Millisecond) // poll interval of a bounded watch
	}
	resumedAt := time.Now()
	resume()
	l.setSkip(faulted, false)
	time.Sleep(2 * time.Second) // load after the hang
	cancel()
	wg.Wait()

	var early, steady, onlyThere []string
	l.mu.Lock()
	for _, f := range l.failures {
		switch {
		case f.at.Before(hungAt.Add(-disruptedBefore)) || !f.at.Before(resumedAt):
		case f.img != nil && f.img.origin == faulted && f.img.acked.After(hungAt.Add(-replicatedWithin)):
			// Acknowledged by westeurope just before it hung: no other
			// region could hold it yet, so no region can serve it.
			onlyThere = append(onlyThere, fmt.Sprintf("%s [acknowledged by westeurope %s before the hang]", f.msg, hungAt.Sub(f.img.acked).Round(time.Millisecond)))
		case f.at.Before(hungAt.Add(rigDrained)):
			early = append(early, fmt.Sprintf("%s [begun %s after the hang]", f.msg, f.at.Sub(hungAt).Round(time.Millisecond)))
		default:
			steady = append(steady, fmt.Sprintf("%s [begun %s after the hang]", f.msg, f.at.Sub(hungAt).Round(time.Millisecond)))
		}
	}
	pushes, pulls := l.pushes, l.pulls
	l.mu.Unlock()
	_, missing := r.converge(l.images(), convergeBound)
	t.Logf("westeurope hung %s: %d pushes, %d pulls; client failures %d before the door drained it (%s), %d after; %d management and health problems; %d acknowledged images missing after it resumed",
		hungFor, pushes, pulls, len(early), rigDrained, len(steady), len(problems), len(missing))
	if len(onlyThere) > 0 {
		t.Logf("%d pulls of images whose only copy was in the hung region (not counted): %s", len(onlyThere), firstFew(onlyThere))
	}
	if len(early) > 0 {
		t.Logf("failures within the drain bound (requests in flight in westeurope, or sent there before the door drained it): %s", firstFew(early))
	}
	if len(steady) > 0 {
		t.Errorf("%d client failures through the door after it had drained the hung region: %s", len(steady), firstFew(steady))
	}
	if len(problems) > 0 {
		t.Errorf("%d health, management or dashboard answers failed: %s", len(problems), firstFew(problems))
	}
	if !sawDown {
		t.Error("the dashboard never showed westeurope Down, routed nothing, while it hung")
	}
	if len(missing) > 0 {
		t.Errorf("%d acknowledged pushes not in every region after the hang: %s", len(missing), firstFew(missing))
	}
	if len(l.hung) > 0 {
		t.Errorf("%d requests hung: %s", len(l.hung), firstFew(l.hung))
	}
	if pushes == 0 || pulls == 0 {
		t.Errorf("the load did nothing (%d pushes, %d pulls)", pushes, pulls)
	}
}
