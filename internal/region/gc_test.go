package region_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/region"
)

// TestGCFreesWhatNoLiveManifestNeedsAndNothingElse: of two images sharing
// a base layer, the deleted one's own blobs are freed; the shared layer,
// the live image's blobs and a blob uploaded within the grace period (a
// push on its way) stay. A dry run first reports the same and changes
// nothing.
func TestGCFreesWhatNoLiveManifestNeedsAndNothingElse(t *testing.T) {
	ctx := t.Context()
	grace := 300 * time.Millisecond
	r := openRegion(t, region.Config{Name: "eastus", DataDir: t.TempDir(), GCGrace: grace, GCInterval: -1})
	defer r.Close()
	clock := region.UseTestClock(r)
	blob := func(b []byte) digest.Digest {
		d := digest.FromBytes(b)
		if _, err := r.PutBlob(ctx, "app", d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	manifest := func(tag string, blobs ...[]byte) {
		var layers []string
		for _, b := range blobs[1:] {
			layers = append(layers, `{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"`+blob(b).String()+`","size":`+itoa(len(b))+`}`)
		}
		m := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
			blob(blobs[0]).String() + `","size":` + itoa(len(blobs[0])) + `},"layers":[` + join(layers) + `]}`
		if _, err := r.PutManifest(ctx, "app", tag, "application/vnd.oci.image.manifest.v1+json", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	base, oldOnly, oldCfg, newCfg := bytes.Repeat([]byte("b"), 1000), bytes.Repeat([]byte("o"), 2000), []byte(`{"v":"old"}`), []byte(`{"v":"new"}`)
	manifest("old", oldCfg, base, oldOnly)
	manifest("new", newCfg, base)
	if err := r.DeleteManifest(ctx, "app", "old"); err != nil {
		t.Fatal(err)
	}
	// Delete the old manifest by digest so its blobs are unreferenced.
	oldM := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
		digest.FromBytes(oldCfg).String() + `","size":` + itoa(len(oldCfg)) + `},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` +
		digest.FromBytes(base).String() + `","size":1000},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + digest.FromBytes(oldOnly).String() + `","size":2000}]}`
	if err := r.DeleteManifest(ctx, "app", digest.FromBytes([]byte(oldM)).String()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(grace + time.Minute) // every link and file ages past the grace period (files by their wall-clock mtime)
	fresh := blob([]byte("a push on its way"))

	dry, err := r.GC(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if dry.LinksRemoved != 2 || dry.BlobsDeleted != 2 || dry.BytesFreed != int64(2000+len(oldCfg)) || dry.Repositories != 1 || dry.BlobsKept != 3 || !dry.DryRun {
		t.Fatalf("dry run: %+v", dry)
	}
	for _, d := range []digest.Digest{digest.FromBytes(oldOnly), digest.FromBytes(oldCfg)} {
		if ok, _ := r.HasBlob(ctx, "app", d); !ok {
			t.Fatalf("the dry run unlinked %s", d)
		}
	}
	rep, err := r.GC(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.LinksRemoved != 2 || rep.BlobsDeleted != 2 || rep.BytesFreed != dry.BytesFreed || rep.Repositories != 1 || rep.BlobsKept != 3 || rep.DryRun {
		t.Fatalf("collection: %+v (dry run said %+v)", rep, dry)
	}
	for d, want := range map[digest.Digest]bool{digest.FromBytes(oldOnly): false, digest.FromBytes(oldCfg): false,
		digest.FromBytes(base): true, digest.FromBytes(newCfg): true, fresh: true} {
		linked, _ := r.HasBlob(ctx, "app", d)
		_, stored, _ := r.HasContent(ctx, d)
		if linked != want || stored != want {
			t.Errorf("blob %s: linked %v, stored %v; want %v", d, linked, stored, want)
		}
	}
	if again, _ := r.GC(ctx, false); again.BlobsDeleted != 0 || again.LinksRemoved != 0 {
		t.Fatalf("a second collection found more: %+v", again)
	}
}

func itoa(n int) string { return fmt.Sprint(n) }

func join(s []string) string { return strings.Join(s, ",") }

// TestGCSparesALeasedBlob: an unlinked blob past the grace period is
// swept, unless a lease holds it (bytes on their way to a link).
func TestGCSparesALeasedBlob(t *testing.T) {
	ctx := t.Context()
	r := openRegion(t, region.Config{Name: "eastus", DataDir: t.TempDir(), GCGrace: 100 * time.Millisecond, GCInterval: -1})
	defer r.Close()
	clock := region.UseTestClock(r)
	b := []byte("unlinked bytes")
	d := digest.FromBytes(b)
	if _, err := r.PutBlob(ctx, "app", d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteBlob(ctx, "app", d); err != nil { // unlinked, bytes kept
		t.Fatal(err)
	}
	clock.Advance(150 * time.Millisecond) // past the grace period
	release := r.Lease(d)
	if rep, err := r.GC(ctx, false); err != nil || rep.BlobsDeleted != 0 || rep.BlobsKept != 1 {
		t.Fatalf("a leased blob was swept, or not counted as kept: %+v %v", rep, err)
	}
	release()
	if rep, err := r.GC(ctx, false); err != nil || rep.BlobsDeleted != 1 {
		t.Fatalf("the released blob was not swept: %+v %v", rep, err)
	}
}

// TestGCKeepsALinkAClientJustChecked: a client that HEADs a blob and
// skips its upload will PUT a manifest naming it: the link, old and
// unreferenced, is kept for a grace period from the check; an unchecked
// one is removed. Pushing a blob again dates its link anew.
func TestGCKeepsALinkAClientJustChecked(t *testing.T) {
	ctx := t.Context()
	r := openRegion(t, region.Config{Name: "eastus", DataDir: t.TempDir(), GCGrace: 100 * time.Millisecond, GCInterval: -1})
	defer r.Close()
	clock := region.UseTestClock(r)
	put := func(b []byte) digest.Digest {
		d := digest.FromBytes(b)
		if _, err := r.PutBlob(ctx, "app", d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	checked, unchecked, repushed := put([]byte("checked")), put([]byte("unchecked")), put([]byte("pushed again"))
	clock.Advance(150 * time.Millisecond) // every link is past the grace period
	if err := r.TouchBlob(ctx, "app", checked); err != nil {
		t.Fatal(err)
	}
	put([]byte("pushed again"))
	if _, err := r.GC(ctx, false); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[digest.Digest]bool{checked: true, repushed: true, unchecked: false} {
		if ok, _ := r.HasBlob(ctx, "app", d); ok != want {
			t.Errorf("blob %s linked: %v, want %v", d, ok, want)
		}
	}
}

// TestACheckRedatesALinkOnlyPastHalfTheGracePeriod: a client's check
// (TouchBlob) writes the link's date only when the link is at least half
// the grace period old, so a HEAD rarely writes: a check at 40 % leaves
// the date (the link then ages out at its first date), a check at exactly
// 50 % moves it (the link is kept a grace period from the check).
func TestACheckRedatesALinkOnlyPastHalfTheGracePeriod(t *testing.T) {
	ctx := t.Context()
	r := openRegion(t, region.Config{Name: "eastus", DataDir: t.TempDir(), GCGrace: 100 * time.Millisecond, GCInterval: -1})
	defer r.Close()
	clock := region.UseTestClock(r)
	early, half := []byte("checked early"), []byte("checked at half")
	for _, b := range [][]byte{early, half} {
		if _, err := r.PutBlob(ctx, "app", digest.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(40 * time.Millisecond)
	if err := r.TouchBlob(ctx, "app", digest.FromBytes(early)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Millisecond)
	if err := r.TouchBlob(ctx, "app", digest.FromBytes(half)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(60 * time.Millisecond) // 110 ms after the push, 60 after the second check
	if _, err := r.GC(ctx, false); err != nil {
		t.Fatal(err)
	}
	for b, want := range map[string]bool{string(early): false, string(half): true} {
		if ok, _ := r.HasBlob(ctx, "app", digest.FromBytes([]byte(b))); ok != want {
			t.Errorf("%q linked after the sweep: %v, want %v", b, ok, want)
		}
	}
}
