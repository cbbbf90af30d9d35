package up_test

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/up"
)

// TestUsageReportsEveryRegionsBytesWithSharedBlobsCountedOnce: the same
// image pushed to two repositories of eastus replicates everywhere; asked
// of westeurope, usage lists all three regions, each storing the image's
// blobs once (16 + 100,000 bytes) and linking them twice, with two
// manifests in two repositories; --repository and --top answer per
// region too. Traffic: each replica received the layer from eastus once
// (the second repository's needed no transfer) and the small config
// inline in each push's feed record, and westeurope served the layer
// once to a client that pulled it there through the front door.
// repository show gives the repository's size in each region. The
// estimate prices those counts with the price table set in another
// region, exactly as docs/observability.md's formula says.
func TestUsageReportsEveryRegionsBytesWithSharedBlobsCountedOnce(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), FrontDoor: "127.0.0.1:0"})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	eastClient, westClient := newClientAt(t, reg.FrontDoor, "127.0.0.1"), newClientAt(t, reg.FrontDoor, "127.0.0.2")
	eastClient.routedTo("eastus")
	westClient.routedTo("westeurope")
	var img image
	for _, repo := range []string{"usage/a", "usage/b"} {
		// To eastus itself: a loaded machine can make the door send a
		// request to a fallback region, and the counts depend on where
		// the push went.
		img = push(t, east, repo, "v1", "usage", 100_000)
	}
	for _, r := range reg.Regions {
		for _, repo := range []string{"usage/a", "usage/b"} {
			tagArrives(t, r.URL, repo, "v1", img.manifest)
		}
	}
	_, _, m := do(t, "GET", east+"/v2/usage/a/manifests/v1", "", nil)
	if code, at, body := westClient.do("GET", "/v2/usage/a/blobs/"+img.blobs[1].String(), "", nil); code != 200 || len(body) != 100_000 || at != "westeurope" {
		t.Fatalf("pull the layer from westeurope: %d from %q, %d bytes", code, at, len(body))
	}
	get := func(query string) mgmtapi.UsageReport {
		t.Helper()
		code, _, body := do(t, "GET", west+"/_georeg/v1/usage"+query, "", nil)
		var rep mgmtapi.UsageReport
		if code != 200 || json.Unmarshal(body, &rep) != nil {
			t.Fatalf("usage%s: %d %s", query, code, body)
		}
		return rep
	}
	eventually(t, 30*time.Second, func() error {
		rep := get("")
		if len(rep.Regions) != 3 || len(rep.Unreachable) != 0 {
			return fmt.Errorf("regions %d, unreachable %v", len(rep.Regions), rep.Unreachable)
		}
		for _, r := range rep.Regions {
			if r.StoredBytes != 100_016 || r.LogicalBytes != 200_032 || r.Blobs != 2 || r.Manifests != 2 ||
				r.ManifestBytes != int64(2*len(m)) || r.Repositories != 2 {
				return fmt.Errorf("%s: %+v", r.Region, r.Usage)
			}
			// The layer (over the feed's 64 KiB inline limit) is fetched
			// once; the 16-byte config crosses inline in each push's
			// blob record.
			received, served := int64(100_000+2*16), int64(0)
			switch r.Region {
			case "eastus":
				received = 0
			case "westeurope":
				served = 100_000
			}
			var got int64
			for _, n := range r.ReceivedBytes {
				got += n
			}
			if got != received || r.ReceivedBytes["eastus"] != received || r.ServedBytes != served || r.ServedReadThroughBytes != 0 {
				return fmt.Errorf("%s: received %v, served %d (read through %d); want %d from eastus, %d served",
					r.Region, r.ReceivedBytes, r.ServedBytes, r.ServedReadThroughBytes, received, served)
			}
		}
		return nil
	})
	rep := get("?repository=usage/a&top=1")
	for _, r := range rep.Regions {
		if u := r.Repository; u == nil || u.LogicalBytes != 100_016 || u.Manifests != 1 || u.Tags != 1 {
			t.Fatalf("%s: usage/a %+v", r.Region, u)
		}
		if len(r.Top) != 1 || r.Top[0].LogicalBytes != 100_016 {
			t.Fatalf("%s: top %+v", r.Region, r.Top)
		}
	}
	// repository show: the repository's size in each region.
	code, _, body := do(t, "GET", west+"/_georeg/v1/repository?name=usage/a", "", nil)
	var view mgmtapi.RepositoryView
	if code != 200 || json.Unmarshal(body, &view) != nil {
		t.Fatalf("repository show: %d %s", code, body)
	}
	if len(view.Sizes) != 3 || len(view.Unreachable) != 0 {
		t.Fatalf("repository show sizes: %+v, unreachable %v", view.Sizes, view.Unreachable)
	}
	for _, s := range view.Sizes {
		if s.Bytes != 100_016 {
			t.Fatalf("repository show: %s holds %d bytes of usage/a, want 100,016", s.Region, s.Bytes)
		}
	}
	if code, _, body := do(t, "GET", west+"/_georeg/v1/usage?top=0", "", nil); code != 400 {
		t.Fatalf("top=0: %d %s, want 400", code, body)
	}

	// The estimate: no price set, no cost; the bytes are counted. The
	// single region is westeurope, which served the most.
	e := get("").Estimate
	if e == nil || e.Currency != "USD" || e.Home != "westeurope" || e.ReplicationBytes != 2*100_032 || e.RemotePullBytes != 0 ||
		e.ServedBytes != 100_000 || e.ReplicationCost != 0 || e.SingleRegionCost != 0 || e.Saved != 0 || e.InternetCost != 0 {
		t.Fatalf("estimate without prices: %+v", e)
	}
	// Prices set in eastus, asked of westeurope once they arrived, with
	// eastus as the single region: every byte that crossed left eastus,
	// at its own price of 8 per GB; a single-region registry in eastus
	// would have sent westeurope's client its 100,000 bytes at that price.
	prices := `{"currency":"EUR","interRegionPerGB":2,"internetPerGB":4,"regions":{"eastus":{"interRegionPerGB":8}}}`
	if code, _, body := eastClient.do("PUT", "/_georeg/v1/policies/prices", "application/json", []byte(prices)); code != 200 {
		t.Fatalf("set prices: %d %s", code, body)
	}
	const gb = 1 << 30
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
	eventually(t, 30*time.Second, func() error {
		e = get("?home=eastus").Estimate
		if e == nil || e.Currency != "EUR" {
			return fmt.Errorf("prices not arrived in westeurope: %+v", e)
		}
		return nil
	})
	if e.Home != "eastus" || e.ReplicationBytes != 200_064 || e.RemotePullBytes != 100_000 || e.ServedBytes != 100_000 ||
		!near(e.ReplicationCost, 200_064.0/gb*8) || !near(e.SingleRegionCost, 100_000.0/gb*8) ||
		!near(e.Saved, (100_000.0-200_064)/gb*8) || !near(e.InternetCost, 100_000.0/gb*4) {
		t.Fatalf("estimate with eastus as home: %+v", e)
	}
	for _, bad := range []string{"?home=nowhere"} {
		if code, _, body := do(t, "GET", west+"/_georeg/v1/usage"+bad, "", nil); code != 400 {
			t.Fatalf("usage%s: %d %s, want 400", bad, code, body)
		}
	}
	for _, bad := range []string{`{"interRegionPerGB":-1}`, `{"internetPerGB":"free"}`, `{"currency":"a currency too long"}`, `{"price":1}`} {
		if code, _, body := westClient.do("PUT", "/_georeg/v1/policies/prices", "application/json", []byte(bad)); code != 400 {
			t.Fatalf("prices %s: %d %s, want 400", bad, code, body)
		}
	}
	if got := get("?home=eastus").Estimate; got.Currency != "EUR" || !near(got.ReplicationCost, e.ReplicationCost) {
		t.Fatalf("a refused price table changed the prices: %+v", got)
	}
}
