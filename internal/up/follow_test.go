package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// feedPage reads the first 1,000 records of the feed of the region at
// base, as a peer does, without waiting.
func feedPage(t *testing.T, base string) feed.Page {
	t.Helper()
	code, body := asPeer(t, "GET", base+feed.Path+"?since=0&limit=1000&wait=0s")
	if code != 200 {
		t.Fatalf("feed of %s: %d %s", base, code, body)
	}
	var page feed.Page
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	return page
}

// feedSeq returns the number of the record of kind for d in repo in the
// feed of the region at base, and the feed's head.
func feedSeq(t *testing.T, base, kind, repo string, d digest.Digest) (seq, head int64) {
	t.Helper()
	page := feedPage(t, base)
	for _, r := range page.Records {
		if r.Kind == kind && r.Repo == repo && r.Digest == d {
			seq = r.Seq
		}
	}
	if seq == 0 {
		t.Fatalf("no %s record for %s in %s's feed", kind, repo, base)
	}
	return seq, page.Head
}

// readyMarked reports whether the feed of the region at base holds a
// record of region's replica setting marked Ready.
func readyMarked(t *testing.T, base, region string) bool {
	t.Helper()
	for _, r := range feedPage(t, base).Records {
		var s replicate.ReplicaSetting
		if r.Kind == meta.KindSetting && r.MediaType == replicate.ReplicaKind && r.Tag == region &&
			json.Unmarshal(r.Data, &s) == nil && s.Ready {
			return true
		}
	}
	return false
}

// TestAFollowerAppliesOtherRepositoriesWhileOneWaitsAndItsCursorWaitsForIt:
// a follower applies records of different repositories side by side. The
// links to eastus hold every download of one image's layer, so that
// image's records cannot apply in westeurope; the images pushed to other
// repositories after it apply meanwhile, the held image is not served in
// part, and westeurope's durable cursor in eastus's feed stays before the
// held layer's record (a restart must apply it). Once the link lets the
// layer through, westeurope holds everything and its cursor reaches
// eastus's head.
func TestAFollowerAppliesOtherRepositoriesWhileOneWaitsAndItsCursorWaitsForIt(t *testing.T) {
	// The layer's bytes are known before the push (push's layer of
	// seed): its downloads are held from the first.
	seed, size := "held", 300_000
	layerPath := "/v2/follow/held/blobs/" + digest.FromString(strings.Repeat(seed+";", size/(len(seed)+1)+1)[:size]).String()
	link := &faultyLink{}
	release := make(chan struct{})
	link.hold(func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, layerPath)
	}, release)
	reg := runLinked(t, up.Config{DataDir: t.TempDir(), Secret: testSecret, Regions: threeRegions(),
		ParkAfter: 10 * time.Minute, AntiEntropyInterval: time.Hour}, link, []string{"westeurope", "southeastasia"})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	awaitReady(t, reg) // following, not joining: a join would fetch the held layer first
	east, west := reg.ByName["eastus"], reg.ByName["westeurope"]
	// A setting record applies after every record before it: eastus's
	// Ready mark, written a round after it is Ready, must be in its feed
	// before the held image, or it would wait for it, and so would every
	// record after it.
	eventually(t, 30*time.Second, func() error {
		if !readyMarked(t, east.URL, "eastus") {
			return fmt.Errorf("eastus has not marked itself Ready in its feed yet")
		}
		return nil
	})
	heldImg := push(t, east.URL, "follow/held", "v1", seed, size)
	layer := heldImg.blobs[len(heldImg.blobs)-1]
	if !strings.HasSuffix(layerPath, layer.String()) {
		t.Fatalf("the held path %s is not the pushed layer %s", layerPath, layer)
	}
	var others []image
	for i := range 8 {
		others = append(others, push(t, east.URL, fmt.Sprintf("follow/app%d", i), "v1", fmt.Sprintf("other %d", i), 1000))
	}
	heldSeq, _ := feedSeq(t, east.URL, "blob", "follow/held", layer)

	eventually(t, 30*time.Second, func() error {
		for i, img := range others {
			if err := holdsImage(t, reg, west.URL, fmt.Sprintf("follow/app%d", i), "v1", img); err != nil {
				return fmt.Errorf("while follow/held waits for its layer: %w", err)
			}
		}
		return nil
	})
	if link.waiting() == 0 {
		t.Fatal("no download of the held layer is waiting: the test holds nothing")
	}
	if code, _ := asPeerWith(t, testSecret, http.MethodHead, west.URL+"/v2/follow/held/manifests/v1"); code != 404 {
		t.Fatalf("westeurope answers %d for the image whose layer it lacks", code)
	}
	cursor, err := west.Node.Region.Cursor(t.Context(), "eastus")
	if err != nil {
		t.Fatal(err)
	}
	if cursor >= heldSeq {
		t.Fatalf("westeurope's cursor in eastus's feed is %d, past the held layer's record %d, which it has not applied", cursor, heldSeq)
	}

	released = true
	close(release)
	_, head := feedSeq(t, east.URL, "blob", "follow/held", layer)
	eventually(t, 30*time.Second, func() error {
		if err := holdsImage(t, reg, west.URL, "follow/held", "v1", heldImg); err != nil {
			return err
		}
		if c, err := west.Node.Region.Cursor(t.Context(), "eastus"); err != nil || c < head {
			return fmt.Errorf("westeurope's cursor %d, eastus's head %d (%v)", c, head, err)
		}
		return nil
	})
}
