package region_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

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

// TestRetentionSweepsOnlyUntaggedManifestsOlderThanItsDays: with a policy
// of one day, an untagged manifest is kept at 23 hours and swept at 25; a
// tagged one, an index's child and a referrer of a live manifest are
// kept at any age, and an index swept takes no child with it.
func TestRetentionSweepsOnlyUntaggedManifestsOlderThanItsDays(t *testing.T) {
	const repo = "ret/days"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	clock := region.UseTestClock(r)
	push := func(ref string, mt string, m []byte) digest.Digest {
		t.Helper()
		if ref == "" {
			ref = digest.FromBytes(m).String()
		}
		res, err := r.PutManifest(ctx, repo, ref, mt, m)
		if err != nil {
			t.Fatal(err)
		}
		return res.Digest
	}
	tagged := push("v1", ociManifest, manifestFor(t, r, repo, "tagged"))
	child := manifestFor(t, r, repo, "child")
	childD := push("", ociManifest, child)
	index := push("multi", ociIndex, crashIndex(child))
	cfg := []byte(`{}`)
	if _, err := r.PutBlob(ctx, repo, digest.FromBytes(cfg), 2, bytes.NewReader(cfg)); err != nil {
		t.Fatal(err)
	}
	referrer := push("", ociManifest, fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sig","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1}}`,
		digest.FromBytes(cfg), tagged))
	untagged := push("", ociManifest, manifestFor(t, r, repo, "untagged"))
	if _, err := r.PutSetting(ctx, region.PolicyKind, region.RetentionName, []byte(`{"status":"enabled","days":1,"type":"UntaggedManifests"}`)); err != nil {
		t.Fatal(err)
	}
	sweep := func() []string {
		t.Helper()
		rep, err := r.SweepRetention(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rep.Deleted
	}
	clock.Advance(23 * time.Hour)
	if got := sweep(); len(got) != 0 {
		t.Fatalf("swept at 23 hours with a policy of 1 day: %v", got)
	}
	clock.Advance(2 * time.Hour)
	if got, want := sweep(), []string{repo + "@" + untagged.String()}; !slices.Equal(got, want) {
		t.Fatalf("swept at 25 hours: %v, want %v", got, want)
	}
	for _, d := range []digest.Digest{tagged, childD, index, referrer} {
		if ok, err := r.HasManifest(ctx, repo, d); err != nil || !ok {
			t.Fatalf("%s was swept (%v)", d, err)
		}
	}
	// The index untagged: it goes, its child stays for the next sweep.
	if err := r.DeleteManifest(ctx, repo, "multi"); err != nil {
		t.Fatal(err)
	}
	if got, want := sweep(), []string{repo + "@" + index.String()}; !slices.Equal(got, want) {
		t.Fatalf("swept after untagging the index: %v, want %v", got, want)
	}
	if got, want := sweep(), []string{repo + "@" + childD.String()}; !slices.Equal(got, want) {
		t.Fatalf("the sweep after: %v, want the child %v", got, want)
	}
}
