package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/cache"
	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/up"
)

// TestACachedImageNoRegionPullsIsEvictedEverywhere: a rule with
// evictUntouched 5s. Two images are cached; one is pulled again and
// again in southeastasia, which did not fetch it; the other is not.
// Retention's run evicts the unused one (once, by the region that
// fetched it), in every region, and keeps the used one: pulls in any
// region count. While a region cannot be asked for its pulls, nothing is
// evicted; after the heal the image nobody pulled since goes too. An
// evicted image's next pull fetches it again.
func TestACachedImageNoRegionPullsIsEvictedEverywhere(t *testing.T) {
	upstream := startUpstream(t, "", "")
	regions := []string{"eastus", "westeurope", "southeastasia"}
	keepName := ""
	for i := 0; keepName == "" && i < 100; i++ {
		if cache.Fetcher(regions, fmt.Sprintf("hub/keep%d|v1", i)) != "southeastasia" {
			keepName = fmt.Sprintf("keep%d", i)
		}
	}
	if keepName == "" {
		t.Fatal("no image name whose fetcher is not southeastasia")
	}
	keepOrigin := cache.Fetcher(regions, "hub/"+keepName+"|v1")
	keep := upstream.put(t, "library/"+keepName, "v1", 1)
	drop := upstream.put(t, "library/drop", "v1", 1)

	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), Distance: up.Links(link.Shape{})})
	east, asia := reg.ByName["eastus"].URL, reg.ByName["southeastasia"].URL
	putCacheRule(t, reg, east, "library", `{"source":"http://`+upstream.addr+`/library/*","target":"hub/*","evictUntouched":"5s"}`)
	pull := func(base, repo string, want digest.Digest) {
		t.Helper()
		code, body := getManifest(t, base+"/v2/"+repo+"/manifests/v1")
		if code != 200 || digest.FromBytes(body) != want {
			t.Fatalf("pull %s from %s: %d %s", repo, base, code, body[:min(len(body), 300)])
		}
	}
	// tagged says whether region base lists repo:v1 (a tag listing is
	// not a pull).
	tagged := func(base, repo string) bool {
		code, _, body := do(t, "GET", base+"/v2/"+repo+"/tags/list", "", nil)
		var list struct{ Tags []string }
		_ = json.Unmarshal(body, &list)
		return code == 200 && slices.Contains(list.Tags, "v1")
	}
	everywhere := func(repo string, want bool) {
		t.Helper()
		for _, r := range reg.Regions {
			eventually(t, 30*time.Second, func() error {
				if got := tagged(r.URL, repo); got != want {
					return fmt.Errorf("%s lists %s:v1: %v, want %v", r.Name, repo, got, want)
				}
				return nil
			})
		}
	}
	run := func() []string {
		t.Helper()
		var all []string
		for _, r := range reg.Regions {
			code, _, body := do(t, http.MethodPost, r.URL+"/_georeg/v1/policies/retention/run", "", nil)
			var rep region.RetentionReport
			if code != 200 || json.Unmarshal(body, &rep) != nil {
				t.Fatalf("retention run in %s: %d %s", r.Name, code, body)
			}
			all = append(all, rep.Evicted...)
		}
		return all
	}

	pull(east, "hub/"+keepName, keep)
	pull(east, "hub/drop", drop)
	everywhere("hub/"+keepName, true)
	everywhere("hub/drop", true)
	// fetched counts the images fetched from the upstream, in every region.
	fetched := func() float64 {
		n := 0.0
		for _, r := range reg.Regions {
			n += metric(t, r.URL, "georeg_cache_pulls_total", map[string]string{"rule": "library", "outcome": "fetched"})
		}
		return n
	}
	fetches := fetched()

	// keep is pulled in southeastasia for 7 s; drop is not pulled again.
	for range 14 {
		pull(asia, "hub/"+keepName, keep)
		time.Sleep(500 * time.Millisecond)
	}
	if got, want := run(), []string{"hub/drop@" + drop.String()}; !slices.Equal(got, want) {
		t.Fatalf("evicted %v, want %v (the image pulled in southeastasia kept)", got, want)
	}
	everywhere("hub/drop", false)
	everywhere("hub/"+keepName, true)

	// Nobody pulls keep now; one region cannot be asked for its pulls.
	time.Sleep(6 * time.Second)
	other := "eastus"
	if keepOrigin == other {
		other = "westeurope"
	}
	reg.Cut(other, link.BlackHole)
	if got := run(); len(got) != 0 {
		t.Fatalf("with %s unreachable, evicted %v: a region that cannot say it pulls an image keeps it", other, got)
	}
	reg.Cut(other, link.Healthy)
	if got, want := run(), []string{"hub/" + keepName + "@" + keep.String()}; !slices.Equal(got, want) {
		t.Fatalf("after the heal, evicted %v, want %v", got, want)
	}
	everywhere("hub/"+keepName, false)

	// An evicted image's next pull fetches it again (its blobs are still
	// held until garbage collection: not fetched twice).
	pull(east, "hub/drop", drop)
	// Counted when the fetch stored the image, which the pull (served as
	// it streamed) does not wait for.
	eventually(t, 30*time.Second, func() error {
		if n := fetched(); n != fetches+1 {
			return fmt.Errorf("the regions fetched %v images from the upstream, %v before the eviction: the pull did not fetch again", n, fetches)
		}
		return nil
	})
	everywhere("hub/drop", true)
}
