package up_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/up"
)

// TestAStalledLinkNeitherWedgesReplicationNorHangsAClient: the link from
// westeurope to eastus stops forwarding in the middle of a 20 MiB blob and
// stays open. Meanwhile a client's pull in westeurope of an image it
// lacks ends within its bound (served from southeastasia, which holds it),
// and southeastasia, on its own link, is not held up at all. The stalled
// transfer is cut and resumed from southeastasia: westeurope holds the
// big image while the link still stalls. Once the link forwards again
// westeurope holds both images within a bound.
func TestAStalledLinkNeitherWedgesReplicationNorHangsAClient(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: testSecret, Regions: threeRegions(),
		Distance: up.Links(link.Shape{}), IdleTimeout: time.Second, ParkAfter: 2 * time.Second, AntiEntropyInterval: time.Hour})
	east, west, asia := reg.ByName["eastus"], reg.ByName["westeurope"], reg.ByName["southeastasia"]
	westLink := reg.Link("westeurope", "eastus")
	westLink.Throttle(2_000_000) // 20 MiB take 10 s: time to stall it midway
	big := push(t, east.URL, "stall/big", "v1", "big", 20<<20)
	eventually(t, 30*time.Second, func() error {
		if _, toWest := westLink.Delivered(); toWest < 2<<20 {
			return fmt.Errorf("%d bytes of the blob reached westeurope so far", toWest)
		}
		return nil
	})
	westLink.Set(link.Stall)
	westLink.Throttle(0)
	small := push(t, east.URL, "stall/small", "v1", "small", 200_000)
	// southeastasia's own link is fine: it gets both.
	for _, img := range []struct {
		repo string
		img  image
	}{{"stall/big", big}, {"stall/small", small}} {
		eventually(t, 30*time.Second, func() error {
			if !held(t, asia.URL, "/v2/"+img.repo+"/manifests/v1") {
				return fmt.Errorf("southeastasia lacks %s", img.repo)
			}
			return nil
		})
	}
	// A client in westeurope gets the small image, read through from
	// southeastasia, within its bound (eastus is asked first and stalls).
	client := &http.Client{Timeout: 20 * time.Second}
	start := time.Now()
	req, _ := http.NewRequest("GET", west.URL+"/v2/stall/small/manifests/"+small.manifest.String(), nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("a pull in westeurope while its link to eastus stalls: %v after %s", err, time.Since(start))
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a pull in westeurope while its link to eastus stalls: %d after %s", resp.StatusCode, time.Since(start))
	}
	t.Logf("pull read through during the stall answered in %s", time.Since(start).Round(time.Millisecond))

	// Anti-entropy is not held up by the stuck transfer either: a round
	// against eastus (over the stalled link) ends within its bounds, and
	// one against southeastasia brings westeurope the small image whole
	// while the link still stalls.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // a hang fails the test, not the run
	defer cancel()
	_, err = west.Node.Replicator().AntiEntropyRound(ctx, "eastus")
	if ctx.Err() != nil {
		t.Fatalf("anti-entropy against eastus over the stalled link did not end: %v", err)
	}
	t.Logf("anti-entropy against eastus over the stalled link ended: %v", err)
	if _, err := west.Node.Replicator().AntiEntropyRound(ctx, "southeastasia"); err != nil {
		t.Fatalf("anti-entropy against southeastasia while the link to eastus stalls: %v", err)
	}
	if code, _ := asPeer(t, "HEAD", west.URL+"/v2/stall/small/manifests/v1"); code != 200 {
		t.Fatalf("westeurope lacks stall/small:v1 after anti-entropy with southeastasia: %d", code)
	}
	if err := pullable(t, west.URL, "stall/small", "v1", small); err != nil {
		t.Fatalf("after anti-entropy with southeastasia: %v", err)
	}

	// The big blob's transfer over the stalled link is cut at the idle
	// bound and resumed from the next region holding it: westeurope holds
	// the big image while the link still stalls (a fetch that waited for
	// the same peer would not: mutate/10b).
	eventually(t, 30*time.Second, func() error {
		if n := metric(t, west.URL, "georeg_replication_fetch_failures_total", map[string]string{"peer": "eastus", "reason": "stalled"}); n == 0 {
			return fmt.Errorf("westeurope cut no stalled fetch from eastus")
		}
		if code, _ := asPeer(t, "HEAD", west.URL+"/v2/stall/big/manifests/v1"); code != 200 {
			return fmt.Errorf("westeurope lacks stall/big:v1 while its link to eastus stalls")
		}
		return pullable(t, west.URL, "stall/big", "v1", big)
	})

	westLink.Set(link.Healthy)
	healed := time.Now()
	for _, img := range []struct {
		repo string
		img  image
	}{{"stall/big", big}, {"stall/small", small}} {
		eventually(t, 60*time.Second, func() error {
			code, _ := asPeer(t, "HEAD", west.URL+"/v2/"+img.repo+"/manifests/v1")
			if code != 200 {
				return fmt.Errorf("westeurope lacks %s:v1 (its tag)", img.repo)
			}
			return pullable(t, west.URL, img.repo, "v1", img.img)
		})
	}
	t.Logf("westeurope converged %s after the link healed", time.Since(healed).Round(time.Millisecond))
}
