package up_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/up"
)

// lock sets an image lock through base's API.
func lock(t *testing.T, base, repo, tag string, writeEnabled bool) {
	t.Helper()
	body := fmt.Sprintf(`{"writeEnabled":%v,"deleteEnabled":%v}`, writeEnabled, writeEnabled)
	code, _, out := do(t, http.MethodPatch, base+"/_georeg/v1/repository?name="+url.QueryEscape(repo)+"&image="+tag, "application/json", []byte(body))
	if code != 200 {
		t.Fatalf("lock %s:%s: %d %s", repo, tag, code, out)
	}
}

// TestALockWinsTheRaceWithATagUpdateFromAnotherRegion: eastus locks
// app:v1 while westeurope, cut off from eastus's feed, moves app:v1 to
// another image (its push is accepted: it has not heard of the lock).
// Once the link heals, app:v1 is the locked image in every region, the
// lock holds everywhere, and anti-entropy does not undo it. Unlocked, the
// tag moves again.
// antiEntropyRounds is how many anti-entropy rounds the region at base
// has completed.
func antiEntropyRounds(t *testing.T, base string) float64 {
	return metric(t, base, "georeg_antientropy_rounds_total", map[string]string{"outcome": "ok"})
}

func TestALockWinsTheRaceWithATagUpdateFromAnotherRegion(t *testing.T) {
	link := &faultyLink{}
	// Anti-entropy every 2 s: westeurope may also learn the lock from
	// southeastasia that way, so the race below must end well within it.
	reg := runLinked(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), AntiEntropyInterval: 2 * time.Second}, link, []string{"westeurope"})
	east, west, asia := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL, reg.ByName["southeastasia"].URL
	locked := push(t, east, "app", "v1", "locked image", 1<<10)
	for _, base := range []string{west, asia} {
		tagArrives(t, base, "app", "v1", locked.manifest)
	}
	link.set(isFeed) // westeurope hears nothing more from eastus...
	// ...once the long-poll it has outstanding returns: spend it on a
	// change it then receives.
	spent := push(t, east, "app", "spent", "spends the outstanding poll", 1<<10)
	tagArrives(t, west, "app", "spent", spent.manifest)
	// The racing image is stored in westeurope first, so the race itself
	// is one manifest PUT right after the lock.
	racer := push(t, west, "app", "racer-staged", "racing update", 1<<10)
	if racer.manifest == locked.manifest {
		t.Fatal("the two images are the same")
	}
	lock(t, east, "app", "v1", false)
	if code, _, body := do(t, http.MethodPut, west+"/v2/app/manifests/v1", "application/vnd.oci.image.manifest.v1+json", manifestOf(t, west, "app", racer.manifest.String())); code != 201 {
		t.Fatalf("westeurope refused the racing update (%d %s): it heard of the lock before it; the race did not happen", code, body)
	}
	// eastus refuses westeurope's update when it arrives (the lock is
	// there): once a later push of westeurope's has applied in eastus, so
	// has the update (a feed applies in order).
	after := push(t, west, "app", "after-racer", "pushed after the racing update", 1<<10)
	tagArrives(t, east, "app", "after-racer", after.manifest)
	if got := tagState(t, east, "app")["v1"]; got != locked.manifest.String() {
		t.Fatalf("eastus moved its locked tag to %s", got)
	}
	link.set(func(*http.Request) bool { return false })
	for _, base := range []string{east, west, asia} {
		tagArrives(t, base, "app", "v1", locked.manifest)
	}
	// The lock holds in every region, for pushes and deletes.
	for _, base := range []string{east, west, asia} {
		eventually(t, 10*time.Second, func() error {
			code, _, body := do(t, http.MethodPut, base+"/v2/app/manifests/v1", "application/vnd.oci.image.manifest.v1+json", manifestOf(t, base, "app", racer.manifest.String()))
			if c, _ := errorOf(body); code != 403 || c != "DENIED" {
				return fmt.Errorf("push over the lock in %s: %d %s", base, code, body)
			}
			return nil
		})
		if code, _, body := do(t, http.MethodDelete, base+"/v2/app/manifests/v1", "", nil); code != 403 {
			t.Errorf("delete of the locked tag in %s: %d %s", base, code, body)
		}
		if code, _, body := do(t, http.MethodDelete, base+"/v2/app/manifests/"+locked.manifest.String(), "", nil); code != 403 {
			t.Errorf("delete of the locked manifest in %s: %d %s", base, code, body)
		}
	}
	// Anti-entropy (every 2 s) compares and finds nothing to undo: two
	// more completed rounds in every region, then the check.
	marks := map[string]float64{}
	for _, base := range []string{east, west, asia} {
		marks[base] = antiEntropyRounds(t, base)
	}
	for _, base := range []string{east, west, asia} {
		eventually(t, 10*time.Second, func() error {
			if n := antiEntropyRounds(t, base); n < marks[base]+2 {
				return fmt.Errorf("%s completed %v anti-entropy rounds since the mark, want 2", base, n-marks[base])
			}
			return nil
		})
	}
	for _, base := range []string{east, west, asia} {
		if got := tagState(t, base, "app")["v1"]; got != locked.manifest.String() {
			t.Fatalf("after anti-entropy %s has app:v1 at %s", base, got)
		}
	}
	// Unlocked, the tag moves again, everywhere.
	lock(t, west, "app", "v1", true)
	eventually(t, 10*time.Second, func() error {
		if code, _, _ := do(t, http.MethodGet, asia+"/_georeg/v1/repository/tags?name=app", "", nil); code != 200 {
			return fmt.Errorf("tags: %d", code)
		}
		return nil
	})
	var moved image
	eventually(t, 10*time.Second, func() error {
		code, _, _ := do(t, http.MethodPut, asia+"/v2/app/manifests/v1", "application/vnd.oci.image.manifest.v1+json", manifestOf(t, asia, "app", racer.manifest.String()))
		if code != 201 {
			return fmt.Errorf("push after unlocking: %d", code)
		}
		moved = racer
		return nil
	})
	for _, base := range []string{east, west, asia} {
		tagArrives(t, base, "app", "v1", moved.manifest)
	}
}

// manifestOf returns the bytes of manifest d of repo from base.
func manifestOf(t *testing.T, base, repo, d string) []byte {
	t.Helper()
	code, _, body := do(t, http.MethodGet, base+"/v2/"+repo+"/manifests/"+d, "", nil)
	if code != 200 {
		t.Fatalf("manifest %s in %s: %d", d, base, code)
	}
	return body
}
