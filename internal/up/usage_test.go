package up_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/mgmtapi"
)

// TestUsageReportsEveryRegionsBytesWithSharedBlobsCountedOnce: the same
// image pushed to two repositories of eastus replicates everywhere; asked
// of westeurope, usage lists all three regions, each storing the image's
// blobs once (16 + 100,000 bytes) and linking them twice, with two
// manifests in two repositories; --repository and --top answer per
// region too. Traffic: each replica received the layer from eastus once
// (the second repository's needed no transfer) and the small config
// inline in each push's feed record, and westeurope served the layer
// once to a client that pulled it there. repository show gives the
// repository's size in each region.
func TestUsageReportsEveryRegionsBytesWithSharedBlobsCountedOnce(t *testing.T) {
	reg := startRegistry(t)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	var img image
	for _, repo := range []string{"usage/a", "usage/b"} {
		img = push(t, east, repo, "v1", "usage", 100_000)
	}
	for _, r := range reg.Regions {
		for _, repo := range []string{"usage/a", "usage/b"} {
			tagArrives(t, r.URL, repo, "v1", img.manifest)
		}
	}
	_, _, m := do(t, "GET", east+"/v2/usage/a/manifests/v1", "", nil)
	if code, _, body := do(t, "GET", west+"/v2/usage/a/blobs/"+img.blobs[1].String(), "", nil); code != 200 || len(body) != 100_000 {
		t.Fatalf("pull the layer from westeurope: %d, %d bytes", code, len(body))
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
}
