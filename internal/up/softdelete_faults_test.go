package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/up"
)

// softDeleteOn enables soft delete from base and waits until every region
// of reg has the policy.
func softDeleteOn(t *testing.T, reg *up.Registry, base string) {
	t.Helper()
	if code, _, out := do(t, http.MethodPut, base+"/_georeg/v1/policies/soft-delete", "application/json", []byte(`{"status":"enabled","days":7}`)); code != 200 {
		t.Fatalf("policy: %d %s", code, out)
	}
	for _, r := range reg.Regions {
		eventually(t, 30*time.Second, func() error {
			_, _, out := do(t, http.MethodGet, r.URL+"/_georeg/v1/policies/soft-delete", "", nil)
			if !strings.Contains(string(out), `"enabled"`) {
				return fmt.Errorf("%s: %s", r.Name, out)
			}
			return nil
		})
	}
}

// latestMove is the move of repo:tag with the greatest version in base's
// history.
func latestMove(t *testing.T, base, repo, tag string) region.TagHistoryEntry {
	t.Helper()
	var h []region.TagHistoryEntry
	_, _, out := do(t, http.MethodGet, base+"/_georeg/v1/repository/tag-history?name="+repo+"&tag="+tag, "", nil)
	if err := json.Unmarshal(out, &h); err != nil || len(h) == 0 {
		t.Fatalf("history of %s:%s in %s: %v %s", repo, tag, base, err, out)
	}
	best, bestV := h[0], hlc.Version{}
	for _, m := range h {
		v, err := hlc.ParseVersion(m.Of)
		if err != nil {
			t.Fatalf("move %+v: %v", m, err)
		}
		if bestV.Less(v) {
			best, bestV = m, v
		}
	}
	return best
}

// TestARestoreRacingAPushOfItsTagEndsWithTheLaterEverywhere: with soft
// delete on, image A (tag v1) is deleted; then, at once, westeurope
// restores A with v1 and southeastasia pushes image B as v1. Every region
// ends with v1 at the same manifest, the move with the later version (as
// every region's history says), and that image is pullable everywhere.
func TestARestoreRacingAPushOfItsTagEndsWithTheLaterEverywhere(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()})
	east, west, asia := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL, reg.ByName["southeastasia"].URL
	softDeleteOn(t, reg, east)
	a := push(t, east, "race/app", "v1", "race-a", 20_000)
	for _, r := range reg.Regions {
		tagArrives(t, r.URL, "race/app", "v1", a.manifest)
	}
	if code, _, out := do(t, http.MethodDelete, east+"/v2/race/app/manifests/"+a.manifest.String(), "", nil); code != 202 {
		t.Fatalf("delete: %d %s", code, out)
	}
	eventually(t, 30*time.Second, func() error {
		if len(deletedIn(t, west, "race/app")) != 1 {
			return fmt.Errorf("westeurope does not keep A yet")
		}
		return nil
	})
	var b image
	var wg sync.WaitGroup
	wg.Go(func() {
		if code, _, out := do(t, http.MethodPost, west+"/_georeg/v1/repository/restore?name=race/app", "application/json", []byte(fmt.Sprintf(`{"digest":%q,"force":true}`, a.manifest))); code != 200 {
			t.Errorf("restore: %d %s", code, out)
		}
	})
	wg.Go(func() { b = push(t, asia, "race/app", "v1", "race-b", 20_000) })
	wg.Wait()
	if t.Failed() {
		return
	}
	var winner string
	eventually(t, 30*time.Second, func() error {
		var seen []string
		for _, r := range reg.Regions {
			seen = append(seen, tagState(t, r.URL, "race/app")["v1"])
		}
		if seen[0] == "" || seen[0] != seen[1] || seen[1] != seen[2] {
			return fmt.Errorf("v1 is %v across the regions", seen)
		}
		winner = seen[0]
		for _, r := range reg.Regions {
			if m := latestMove(t, r.URL, "race/app", "v1"); m.Digest.String() != winner {
				return fmt.Errorf("%s's latest recorded move of v1 is %s at %s, the tag is %s", r.Name, m.Digest, m.Version, winner)
			}
		}
		return nil
	})
	img := a
	if winner == b.manifest.String() {
		img = b
	}
	for _, r := range reg.Regions {
		eventually(t, 30*time.Second, func() error { return pullable(t, r.URL, "race/app", "v1", img) })
	}
	t.Logf("v1 ended at %s (A %s, B %s)", winner, a.manifest, b.manifest)
}

// TestADeleteAndARestoreInAPartitionResolveByVersionAfterTheHeal: eastus
// and westeurope are cut off from each other (southeastasia relays
// nothing). With soft delete on, image A is live everywhere. In the
// partition: westeurope deletes A and restores it at once (its restore
// is the later write there), then eastus deletes A. After the heal the
// later write, eastus's delete, wins in every region: A is gone
// everywhere and restorable where it was kept. Then, partitioned again,
// eastus restores A after westeurope deleted it: the restore wins
// everywhere.
func TestADeleteAndARestoreInAPartitionResolveByVersionAfterTheHeal(t *testing.T) {
	reg, partition := splitRegistry(t)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	softDeleteOn(t, reg, east)
	a := push(t, east, "split/app", "v1", "split-a", 20_000)
	for _, r := range reg.Regions {
		tagArrives(t, r.URL, "split/app", "v1", a.manifest)
	}
	del := func(base string) {
		t.Helper()
		if code, _, out := do(t, http.MethodDelete, base+"/v2/split/app/manifests/"+a.manifest.String(), "", nil); code != 202 {
			t.Fatalf("delete in %s: %d %s", base, code, out)
		}
	}
	restore := func(base string) {
		t.Helper()
		if code, _, out := do(t, http.MethodPost, base+"/_georeg/v1/repository/restore?name=split/app", "application/json", []byte(fmt.Sprintf(`{"digest":%q}`, a.manifest))); code != 200 {
			t.Fatalf("restore in %s: %d %s", base, code, out)
		}
	}
	everywhere := func(live bool) {
		t.Helper()
		for _, r := range reg.Regions {
			eventually(t, 60*time.Second, func() error {
				code, _, _ := do(t, http.MethodGet, r.URL+"/v2/split/app/manifests/"+a.manifest.String(), "", nil)
				if live && code != 200 || !live && code != 404 {
					return fmt.Errorf("%s answers %d for A (want live %v)", r.Name, code, live)
				}
				if live {
					return pullable(t, r.URL, "split/app", "v1", a)
				}
				return nil
			})
		}
	}

	partition(true)
	del(west)
	restore(west)
	time.Sleep(5 * time.Millisecond) // eastus's delete is later by the wall clock too
	del(east)
	partition(false)
	everywhere(false)
	eventually(t, 30*time.Second, func() error {
		if len(deletedIn(t, west, "split/app")) != 1 {
			return fmt.Errorf("westeurope does not keep A restorable")
		}
		return nil
	})

	// The other way: partitioned again, eastus deletes A, westeurope
	// deletes it later, and eastus restores it later still: the restore
	// wins everywhere.
	restore(west)
	everywhere(true)
	partition(true)
	del(east)
	time.Sleep(5 * time.Millisecond)
	del(west)
	time.Sleep(5 * time.Millisecond)
	restore(east)
	partition(false)
	everywhere(true)
}

// TestRestoreVisibleEverywhereFigures restores images at the default
// simulated distance and reports how long after the restore's answer
// each was pullable (its tag, every blob) in every region: p50 and p99
// over $GEOREG_RESTORES restores (10 by default; make bench-softdelete:
// 100). A figure, not a pass/fail timing: it fails only if a restore
// never arrives.
func TestRestoreVisibleEverywhereFigures(t *testing.T) {
	n := 10
	if s := os.Getenv("GEOREG_RESTORES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("GEOREG_RESTORES=%q: give a count", s)
		}
	}
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), Distance: up.DefaultDistance})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	softDeleteOn(t, reg, east)
	var took []time.Duration
	for i := range n {
		tag := fmt.Sprintf("v%d", i)
		img := push(t, east, "figures/app", tag, fmt.Sprintf("figures-%d", i), 100_000)
		for _, r := range reg.Regions {
			tagArrives(t, r.URL, "figures/app", tag, img.manifest)
		}
		if code, _, out := do(t, http.MethodDelete, east+"/v2/figures/app/manifests/"+img.manifest.String(), "", nil); code != 202 {
			t.Fatalf("delete: %d %s", code, out)
		}
		// The delete has reached every region (its tag answers 404), and
		// westeurope keeps it.
		eventually(t, 60*time.Second, func() error {
			for _, r := range reg.Regions {
				if code, _, _ := do(t, http.MethodGet, r.URL+"/v2/figures/app/manifests/"+tag, "", nil); code != 404 {
					return fmt.Errorf("%s still serves %s: %d", r.Name, tag, code)
				}
			}
			for _, m := range deletedIn(t, west, "figures/app") {
				if m.Digest == img.manifest {
					return nil
				}
			}
			return fmt.Errorf("westeurope does not keep %s yet", tag)
		})
		if code, _, out := do(t, http.MethodPost, west+"/_georeg/v1/repository/restore?name=figures/app", "application/json", []byte(fmt.Sprintf(`{"digest":%q}`, img.manifest))); code != 200 {
			t.Fatalf("restore: %d %s", code, out)
		}
		start := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		slowest := time.Duration(0)
		for _, r := range reg.Regions {
			wg.Go(func() {
				eventually(t, 60*time.Second, func() error { return pullable(t, r.URL, "figures/app", tag, img) })
				mu.Lock()
				slowest = max(slowest, time.Since(start))
				mu.Unlock()
			})
		}
		wg.Wait()
		took = append(took, slowest)
	}
	slices.Sort(took)
	pct := func(p float64) time.Duration { return took[min(len(took)-1, int(p*float64(len(took))))] }
	t.Logf("restore visible in every region, %d restores at the default simulated distance: p50 %s, p99 %s, max %s",
		n, pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}
