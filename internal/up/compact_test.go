package up_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/up"
)

// TestARegionAwayLongerThanTheFeedHorizonRepairsFromState: feeds are
// compacted once every region applied them (never past a region that is
// behind within the horizon: westeurope, cut off from eastus both ways,
// holds eastus's records back for the horizon; a region eastus hears
// from holds them back however long it is stuck). Cut off longer than that, while
// eastus takes pushes and a delete, westeurope no longer holds them back
// and eastus compacts past its cursor; when the link heals westeurope is
// told its records are gone (FEED_COMPACTED), repairs from eastus's state
// and follows from the floor: it ends identical, nothing lost, the
// deleted image deleted.
func TestARegionAwayLongerThanTheFeedHorizonRepairsFromState(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: testSecret, Regions: threeRegions(),
		Distance: up.Links(link.Shape{}), IdleTimeout: time.Second, AntiEntropyInterval: time.Hour,
		FeedHorizon: 5 * time.Second, CompactInterval: 200 * time.Millisecond})
	east, west := reg.ByName["eastus"], reg.ByName["westeurope"]
	ctx := t.Context()
	var images []image
	var repos []string
	for i := range 6 {
		repo := fmt.Sprintf("compact/app%d", i)
		images, repos = append(images, push(t, east.URL, repo, "v1", fmt.Sprintf("compact %d", i), 20_000)), append(repos, repo)
	}
	// Every region applied them: eastus compacts its feed.
	eventually(t, 30*time.Second, func() error {
		if f, err := east.Node.Region.FeedFloor(ctx); err != nil || f == 0 {
			return fmt.Errorf("eastus's feed floor %d (%v)", f, err)
		}
		return nil
	})
	// Cut off, within the horizon: westeurope's cursor holds eastus back.
	westLink, eastLink := reg.Link("westeurope", "eastus"), reg.Link("eastus", "westeurope")
	westLink.Set(link.Partition)
	eastLink.Set(link.Partition)
	cursor, err := west.Node.Region.Cursor(ctx, "eastus")
	if err != nil {
		t.Fatal(err)
	}
	for i := 6; i < 10; i++ {
		repo := fmt.Sprintf("compact/app%d", i)
		images, repos = append(images, push(t, east.URL, repo, "v1", fmt.Sprintf("compact %d", i), 20_000)), append(repos, repo)
	}
	deleted := images[0]
	if code, _, body := do(t, http.MethodDelete, east.URL+"/v2/"+repos[0]+"/manifests/"+deleted.manifest.String(), "", nil); code != 202 {
		t.Fatalf("delete: %d %s", code, body)
	}
	time.Sleep(time.Second) // a few compaction rounds within the horizon
	if f, _ := east.Node.Region.FeedFloor(ctx); f > cursor {
		t.Fatalf("eastus compacted through %d, past westeurope's cursor %d, within the horizon", f, cursor)
	}
	// Away longer than the horizon: eastus compacts past it.
	eventually(t, 30*time.Second, func() error {
		if f, err := east.Node.Region.FeedFloor(ctx); err != nil || f <= cursor {
			return fmt.Errorf("eastus's feed floor %d, westeurope's cursor %d (%v)", f, cursor, err)
		}
		return nil
	})
	westLink.Set(link.Healthy)
	eastLink.Set(link.Healthy)
	bases := []string{east.URL, west.URL, reg.ByName["southeastasia"].URL}
	eventually(t, 60*time.Second, func() error {
		first := summaryRoot(t, testSecret, bases[0])
		for _, b := range bases[1:] {
			if got := summaryRoot(t, testSecret, b); got != first {
				return fmt.Errorf("%s's summary root differs from eastus's", b)
			}
		}
		return nil
	})
	for i, img := range images[1:] {
		if err := holdsImage(t, reg, west.URL, repos[i+1], "v1", img); err != nil {
			t.Fatal(err)
		}
	}
	if code, _ := asPeerWith(t, testSecret, http.MethodGet, west.URL+"/v2/"+repos[0]+"/manifests/"+deleted.manifest.String()); code != 404 {
		t.Fatalf("the image deleted while westeurope was away: %d there", code)
	}
	if c, _ := west.Node.Region.Cursor(ctx, "eastus"); c <= cursor {
		t.Fatalf("westeurope follows eastus from %d still", c)
	}
}
