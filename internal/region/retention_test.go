package region_test

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/region"
)

// TestRetentionSweepsWhatARetiredRegionPushed: a region sweeps the
// untagged manifests it pushed, and the first region by name also sweeps
// those of an origin that is no longer a region of the registry; a
// manifest pushed by a region that still is stays for that region to
// sweep, so each is deleted once.
func TestRetentionSweepsWhatARetiredRegionPushed(t *testing.T) {
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	r.SetMembers(func(context.Context) ([]string, error) { return []string{"eastus", "westeurope"}, nil })
	apply := func(origin, seed string) digest.Digest {
		m := manifestFor(t, r, "ret/app", seed)
		d := digest.FromBytes(m)
		if err := r.ApplyManifest(t.Context(), "", 0, "ret/app", d, "application/vnd.oci.image.manifest.v1+json", m,
			hlc.Version{Time: 1 << 20, Region: origin}, ""); err != nil {
			t.Fatal(err)
		}
		return d
	}
	retired, live := apply("centralus", "from a retired region"), apply("westeurope", "from a live region")
	if _, err := r.PutSetting(t.Context(), region.PolicyKind, region.RetentionName, []byte(`{"status":"enabled","days":0,"type":"UntaggedManifests"}`)); err != nil {
		t.Fatal(err)
	}
	rep, err := r.SweepRetention(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 1 || rep.Deleted[0] != "ret/app@"+retired.String() {
		t.Fatalf("eastus swept %v; want only the retired region's %s (not westeurope's %s)", rep.Deleted, retired, live)
	}
	// westeurope, not first by name, adopts nothing.
	r.SetMembers(func(context.Context) ([]string, error) { return []string{"westeurope", "southeastasia"}, nil })
	rep, err = r.SweepRetention(t.Context())
	if err != nil || len(rep.Deleted) != 0 {
		t.Fatalf("a region that is not first by name swept %v (%v)", rep.Deleted, err)
	}
}
