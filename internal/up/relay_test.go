package up_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/up"
)

// TestSixRegionsFetchAPushOnceEachAndTheOriginServesTwoCopies: images
// pushed to one of six regions reach every region, whose blob bytes
// each region received exactly once (no duplicate transfer), the
// origin having served two copies (its relays) and the relays the rest.
func TestSixRegionsFetchAPushOnceEachAndTheOriginServesTwoCopies(t *testing.T) {
	var specs []up.RegionSpec
	for i := range 6 {
		specs = append(specs, up.RegionSpec{Name: fmt.Sprintf("r%d", i+1), Listen: "127.0.0.1:0"})
	}
	regions := make([]string, len(specs))
	for i, s := range specs {
		regions[i] = s.Name
	}
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: specs, NoReadThrough: noReadThrough(regions...)})
	origin := reg.ByName["r1"].URL
	sent := func(base string) float64 {
		return metric(t, base, "georeg_http_sent_bytes_total", map[string]string{"route": "blob"})
	}
	var before []float64
	for _, r := range reg.Regions {
		before = append(before, sent(r.URL))
	}
	const images, layer = 6, 512 << 10 // above the inline limit: fetched, not carried in the feed
	var pushed []image
	for i := range images {
		pushed = append(pushed, push(t, origin, fmt.Sprintf("relay/app%d", i), "v1", fmt.Sprintf("relay %d", i), layer))
	}
	eventually(t, 90*time.Second, func() error {
		for _, r := range reg.Regions {
			for i, img := range pushed {
				code, _, _ := do(t, http.MethodHead, r.URL+fmt.Sprintf("/v2/relay/app%d/manifests/v1", i), "", nil)
				if code != 200 {
					return fmt.Errorf("%s: relay/app%d not there yet (%d) %s", r.Name, i, code, img.manifest)
				}
			}
		}
		return nil
	})
	pushedBytes := float64(images * layer)
	var total float64
	for i, r := range reg.Regions {
		got := sent(r.URL) - before[i]
		total += got
		t.Logf("%s served %.2f x the pushed bytes", r.Name, got/pushedBytes)
		if r.Name == "r1" && got > 2*pushedBytes+float64(images)*4096 {
			t.Errorf("the origin served %.2f x the pushed bytes, want at most 2 x", got/pushedBytes)
		}
	}
	// Layers only (configs ride inline): each of the 5 other regions got
	// every layer once.
	if want := 5 * pushedBytes; total < want || total > want+float64(images)*5*4096 {
		t.Errorf("the regions served %.2f x (N-1) x the pushed bytes in all, want 1.00 (no duplicate transfer)", total/want)
	}
}

// TestARelayThatHangsCostsABoundedWaitAndNothingElse: with six regions
// the links to the origin's relays hang (connections open, no
// byte moves) while images keep being pushed to the origin: every image
// reaches every region within a bound, whole, the regions that fetched
// through the hung relay going to the origin instead.
func TestARelayThatHangsCostsABoundedWaitAndNothingElse(t *testing.T) {
	var specs []up.RegionSpec
	var names []string
	for i := range 6 {
		specs = append(specs, up.RegionSpec{Name: fmt.Sprintf("r%d", i+1), Listen: "127.0.0.1:0"})
		names = append(names, specs[i].Name)
	}
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: testSecret, Regions: specs,
		Distance: up.Links(link.Shape{}), IdleTimeout: time.Second, ParkAfter: 2 * time.Second,
		AntiEntropyInterval: time.Hour, NoReadThrough: noReadThrough(names...)})
	origin := reg.ByName["r1"].URL
	const layer = 256 << 10
	everywhere := func(images []image, from int) {
		t.Helper()
		eventually(t, 60*time.Second, func() error {
			for _, r := range reg.Regions {
				for i, img := range images {
					repo := fmt.Sprintf("hang/app%d", from+i)
					if code, _, _ := do(t, http.MethodGet, r.URL+"/v2/"+repo+"/manifests/v1", "", nil); code != 200 {
						return fmt.Errorf("%s: %s not there yet (%d)", r.Name, repo, code)
					}
					for _, b := range img.blobs {
						if code, _, body := do(t, http.MethodGet, r.URL+"/v2/"+repo+"/blobs/"+b.String(), "", nil); code != 200 || digest.FromBytes(body) != b {
							t.Fatalf("%s serves %s of %s it says it holds: %d, %d bytes", r.Name, b, repo, code, len(body))
						}
					}
				}
			}
			return nil
		})
	}
	first := []image{push(t, origin, "hang/app0", "v1", "hang 0", layer)}
	everywhere(first, 0)
	// The links each region fetched the first image through, other than
	// the one to the origin: they hang now.
	var hung [][2]string
	for _, x := range names[1:] {
		for _, via := range names[1:] {
			if via != x && metric(t, reg.ByName[x].URL, "georeg_traffic_bytes_total", map[string]string{"kind": "received", "peer": via}) > 0 {
				hung = append(hung, [2]string{x, via})
				reg.Link(x, via).Set(link.Stall)
			}
		}
	}
	if len(hung) == 0 {
		t.Fatal("no region fetched the first image through a relay")
	}
	t.Logf("hung: %v", hung)
	start := time.Now()
	var images []image
	for i := 1; i <= 8; i++ {
		images = append(images, push(t, origin, fmt.Sprintf("hang/app%d", i), "v1", fmt.Sprintf("hang %d", i), layer))
	}
	everywhere(images, 1)
	t.Logf("8 images everywhere %s after the links to the relays hung", time.Since(start).Round(time.Millisecond))
	for _, l := range hung {
		reg.Link(l[0], l[1]).Set(link.Healthy)
	}
}
