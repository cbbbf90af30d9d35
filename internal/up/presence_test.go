package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/up"
)

// TestWhereAnImageIsIsTrueAndCostsNoRecordPerRegion: images pushed in two
// regions are reported present, by a region that pushed none of them,
// only where a pull by the pushed tag already succeeds (read-through off:
// only what arrived is served), every region ends present for every
// image, and no region wrote or applied a record per manifest to say so
// (no ack records: presence travels as each region's applied marks).
func TestWhereAnImageIsIsTrueAndCostsNoRecordPerRegion(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(),
		NoReadThrough: noReadThrough("eastus", "westeurope", "southeastasia")})
	asia := reg.ByName["southeastasia"].URL
	type pushed struct{ repo, tag, digest string }
	var images []pushed
	for i := range 6 {
		origin := []string{"eastus", "westeurope"}[i%2]
		repo, tag := fmt.Sprintf("where/app%d", i), "v1"
		img := push(t, reg.ByName[origin].URL, repo, tag, fmt.Sprintf("where %d", i), 64<<10)
		images = append(images, pushed{repo, tag, img.manifest.String()})
	}
	complete := 0
	eventually(t, 60*time.Second, func() error {
		complete = 0
		for _, img := range images {
			code, _, body := do(t, http.MethodGet, asia+"/_georeg/v1/images/status?repository="+img.repo+"&reference="+img.tag, "", nil)
			if code == http.StatusNotFound {
				return fmt.Errorf("%s: not in southeastasia yet", img.repo)
			}
			var st mgmtapi.ImageStatus
			if code != 200 || json.Unmarshal(body, &st) != nil {
				t.Fatalf("status of %s: %d %s", img.repo, code, body)
			}
			if st.Digest != img.digest {
				t.Fatalf("status of %s names %s, pushed %s", img.repo, st.Digest, img.digest)
			}
			for _, rs := range st.Regions {
				if rs.State != "present" {
					continue
				}
				// Said present: a pull by the pushed tag succeeds there.
				code, _, _ := do(t, http.MethodGet, reg.ByName[rs.Name].URL+"/v2/"+img.repo+"/manifests/"+img.tag, "", nil)
				if code != 200 {
					t.Fatalf("southeastasia says %s is present in %s, where a pull by its tag answers %d", img.repo, rs.Name, code)
				}
			}
			if !st.Complete {
				return fmt.Errorf("%s: %+v", img.repo, st.Regions)
			}
			complete++
		}
		return nil
	})
	if complete != len(images) {
		t.Fatalf("%d of %d images complete", complete, len(images))
	}
	for _, r := range reg.Regions {
		if n := metric(t, r.URL, "georeg_replication_applied_total", map[string]string{"kind": "ack"}); n != 0 {
			t.Errorf("%s applied %v ack records", r.Name, n)
		}
	}
}
