package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/up"
)

// TestRetentionDeletesUntaggedManifestsAndTheDeletesReplicate: with
// retention on (0 days), the manifest a tag moved away from is deleted by
// the region that pushed it, in every region; tagged
// manifests stay, and only the region that pushed a manifest deletes it.
func TestRetentionDeletesUntaggedManifestsAndTheDeletesReplicate(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()[:2], RetentionInterval: time.Hour})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	old := push(t, east, "ret/app", "v1", "old image", 1<<10)
	cur := push(t, east, "ret/app", "v1", "new image", 1<<10) // v1 moves: old is untagged
	keep := push(t, east, "ret/app", "stable", "kept image", 1<<10)
	tagArrives(t, west, "ret/app", "v1", cur.manifest)
	tagArrives(t, west, "ret/app", "stable", keep.manifest)
	eventually(t, 10*time.Second, func() error {
		if code, _, _ := do(t, http.MethodGet, west+"/v2/ret/app/manifests/"+old.manifest.String(), "", nil); code != 200 {
			return fmt.Errorf("the untagged manifest has not reached westeurope")
		}
		return nil
	})
	if code, _, out := do(t, http.MethodPut, west+"/_georeg/v1/policies/retention", "application/json", []byte(`{"status":"enabled","days":0,"type":"UntaggedManifests"}`)); code != 200 {
		t.Fatalf("retention: %d %s", code, out)
	}
	eventually(t, 10*time.Second, func() error {
		code, _, out := do(t, http.MethodGet, east+"/_georeg/v1/policies/retention", "", nil)
		var p region.Retention
		if code != 200 || json.Unmarshal(out, &p) != nil || p.Status != "enabled" {
			return fmt.Errorf("eastus has not the policy yet: %s", out)
		}
		return nil
	})
	// westeurope pushed nothing: its sweep deletes nothing.
	code, _, out := do(t, http.MethodPost, west+"/_georeg/v1/policies/retention/run", "", nil)
	var rep region.RetentionReport
	if code != 200 || json.Unmarshal(out, &rep) != nil || len(rep.Deleted) != 0 {
		t.Fatalf("westeurope's sweep: %d %s", code, out)
	}
	code, _, out = do(t, http.MethodPost, east+"/_georeg/v1/policies/retention/run", "", nil)
	if code != 200 || json.Unmarshal(out, &rep) != nil || len(rep.Deleted) != 1 || rep.Deleted[0] != "ret/app@"+old.manifest.String() {
		t.Fatalf("eastus's sweep: %d %s", code, out)
	}
	for _, base := range []string{east, west} {
		eventually(t, 10*time.Second, func() error {
			if code, _, _ := do(t, http.MethodGet, base+"/v2/ret/app/manifests/"+old.manifest.String(), "", nil); code != 404 {
				return fmt.Errorf("%s still serves the untagged manifest: %d", base, code)
			}
			return nil
		})
		for _, img := range []image{cur, keep} {
			if err := pullable(t, base, "ret/app", img.manifest.String(), img); err != nil {
				t.Fatal(err)
			}
		}
	}
	if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/policies/retention", "application/json", []byte(`{"status":"on","days":-1}`)); code != 400 {
		t.Fatalf("a bad policy: %d %s", code, out)
	}
}
