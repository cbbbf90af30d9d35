package region_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// storeBytes puts b in r's content store as a replication fetch does,
// without linking it anywhere.
func storeBytes(t *testing.T, r *region.Region, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	open := func(context.Context, int64) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	if _, err := r.FetchBlob(t.Context(), "repl.test."+d.Encoded(), d, int64(len(b)), open, nil); err != nil {
		t.Fatal(err)
	}
	return d
}

func v(tm int64, region string) hlc.Version { return hlc.Version{Time: tm, Region: region} }

// blobState is what a test compares between regions: linked or not,
// whether reads answer "deleted" at once, and the repository's summary
// (which covers blob tombstones).
func blobState(t *testing.T, r *region.Region, repo string, d digest.Digest) string {
	t.Helper()
	linked, err := r.HasBlob(t.Context(), repo, d)
	if err != nil {
		t.Fatal(err)
	}
	gone := r.BlobGone(t.Context(), repo, d) != nil
	sum, err := r.Summaries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("linked=%t gone=%t summary=%s", linked, gone, sum[repo])
}

// TestInvariant9BlobLinksAndDeletesAreLastWriterWinsInEveryOrder applies
// the blob records of four regions (pushes and deletes of one blob in one
// repository) in all 24 orders, each twice: every order ends in the state
// of the newest record, and the same tombstones.
func TestInvariant9BlobLinksAndDeletesAreLastWriterWinsInEveryOrder(t *testing.T) {
	const repo = "deletes/app"
	type change struct {
		v      hlc.Version
		delete bool
	}
	push := func(tm int64, region string) change { return change{v(tm, region), false} }
	del := func(tm int64, region string) change { return change{v(tm, region), true} }
	for _, tc := range []struct {
		name    string
		changes []change
		linked  bool
	}{
		{"a push after the deletes wins", []change{push(10, "eastus"), del(20, "westeurope"), del(25, "eastus"), push(30, "southeastasia")}, true},
		{"a delete after the pushes wins", []change{push(10, "eastus"), push(30, "southeastasia"), del(35, "westeurope"), del(20, "eastus")}, false},
		{"equal times break the tie by region name", []change{push(40, "eastus"), del(40, "westeurope"), push(10, "southeastasia"), del(5, "eastus")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var steps []step
			for _, c := range tc.changes {
				sv := c.v
				if c.delete {
					steps = append(steps, step{"delete @" + sv.String(), func(ctx context.Context, r *region.Region) error {
						return r.ApplyBlobDelete(ctx, "", 0, repo, digest.FromString("blob"), sv)
					}})
					continue
				}
				steps = append(steps, step{"link @" + sv.String(), func(ctx context.Context, r *region.Region) error {
					return r.ApplyBlob(ctx, "", 0, repo, digest.FromString("blob"), sv, -1, nil)
				}})
			}
			want := ""
			for i, order := range permutations(steps) {
				r := open(t, t.TempDir(), 0)
				d := storeBytes(t, r, []byte("blob"))
				for _, s := range append(order, order...) {
					if err := s.apply(t.Context(), r); err != nil {
						t.Fatalf("order %d, %s: %v", i, s.name, err)
					}
				}
				got := blobState(t, r, repo, d)
				r.Close()
				if i == 0 {
					want = got
					if !strings.HasPrefix(got, fmt.Sprintf("linked=%t gone=%t ", tc.linked, !tc.linked)) {
						t.Fatalf("order 0 ends in %s; want linked=%t", got, tc.linked)
					}
					continue
				}
				if got != want {
					t.Fatalf("order %d ends in\n  %s\nwant\n  %s", i, got, want)
				}
			}
		})
	}
}

// TestInvariant2ABlobALiveManifestUsesIsNotDeleted: a client's delete of
// a blob an image uses is refused and changes nothing; a replicated delete
// (made where the image had not arrived) keeps the blob linked for the
// image, and records the tombstone; once the image is gone the blob can
// be deleted.
func TestInvariant2ABlobALiveManifestUsesIsNotDeleted(t *testing.T) {
	const repo = "deletes/used"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	m := manifestFor(t, r, repo, "used")
	res, err := r.PutManifest(ctx, repo, "v1", "application/vnd.oci.image.manifest.v1+json", m)
	if err != nil {
		t.Fatal(err)
	}
	layer := digest.FromBytes([]byte("layer used"))
	before := blobState(t, r, repo, layer)
	err = r.DeleteBlob(ctx, repo, layer)
	if !ocierr.Unsupported.Is(err) || !strings.Contains(err.Error(), res.Digest.String()) {
		t.Fatalf("deleting a blob a live manifest uses: %v; want UNSUPPORTED naming %s", err, res.Digest)
	}
	if got := blobState(t, r, repo, layer); got != before {
		t.Fatalf("a refused delete changed %s into %s", before, got)
	}
	if err := r.ApplyBlobDelete(ctx, "", 0, repo, layer, r.Clock().Now()); err != nil {
		t.Fatal(err)
	}
	if got := blobState(t, r, repo, layer); !strings.HasPrefix(got, "linked=true gone=false") || got == before {
		t.Fatalf("a replicated delete of a used blob: %s; want it linked, its tombstone recorded", got)
	}
	// A blob of the repository no live manifest uses is deleted while the
	// image lives, and the delete is audited.
	spare := storeBytes(t, r, []byte("spare blob"))
	if err := r.ApplyBlob(ctx, "", 0, repo, spare, r.Clock().Now(), -1, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteBlob(ctx, repo, spare); err != nil {
		t.Fatalf("deleting a blob no manifest uses, beside a live image: %v", err)
	}
	if !auditHas(t, r, region.AuditDeleteBlob, repo, spare.String()) {
		t.Fatal("the blob delete left no audit entry")
	}
	if err := r.DeleteManifest(ctx, repo, res.Digest.String()); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteBlob(ctx, repo, layer); err != nil {
		t.Fatalf("deleting the blob once its manifest is gone: %v", err)
	}
	if got := blobState(t, r, repo, layer); !strings.HasPrefix(got, "linked=false gone=true") {
		t.Fatalf("after the delete: %s", got)
	}
	if err := r.DeleteBlob(ctx, repo, layer); !ocierr.BlobUnknown.Is(err) {
		t.Fatalf("deleting it again: %v; want BLOB_UNKNOWN", err)
	}
}

// TestInvariant9AReplicatedManifestOlderThanADeleteIsNotStored: a peer's
// copy of a manifest older than a delete held here is not stored, leaves
// no presence for this region, and a newer push of it wins.
func TestInvariant9AReplicatedManifestOlderThanADeleteIsNotStored(t *testing.T) {
	const repo = "deletes/old"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	m := manifestFor(t, r, repo, "old")
	d := digest.FromBytes(m)
	const mt = "application/vnd.oci.image.manifest.v1+json"
	if err := r.ApplyManifestDelete(ctx, "", 0, repo, d, v(20, "westeurope")); err != nil {
		t.Fatal(err)
	}
	if err := r.ApplyManifest(ctx, "southeastasia", 7, repo, d, mt, m, v(10, "southeastasia"), ""); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.HasManifest(ctx, repo, d); ok {
		t.Fatal("a manifest older than the delete held here was stored")
	}
	if st, err := r.ImageStatus(ctx, repo, d.String()); err == nil && len(st.Present) > 0 {
		t.Fatalf("presence recorded for a manifest that was not stored: %v", st.Present)
	}
	if p, err := r.Presence(ctx, repo, d); err != nil || len(p) > 0 {
		t.Fatalf("presence rows of a manifest that was not stored: %v %v", p, err)
	}
	if kinds := feedKinds(t, r, d, ""); len(kinds) > 0 {
		t.Fatalf("a manifest that was not stored was recorded: %v", kinds)
	}
	if c, err := r.Cursor(ctx, "southeastasia"); err != nil || c != 7 {
		t.Fatalf("southeastasia's cursor %d (%v) after its record was skipped; want 7", c, err)
	}
	if err := r.ManifestGone(ctx, repo, d.String()); !ocierr.ManifestUnknown.Is(err) {
		t.Fatalf("ManifestGone: %v; want MANIFEST_UNKNOWN (deleted)", err)
	}
	if err := r.ApplyManifest(ctx, "", 0, repo, d, mt, m, v(30, "southeastasia"), ""); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.HasManifest(ctx, repo, d); !ok {
		t.Fatal("a push newer than the delete was not stored")
	}
}

// TestAManifestDeletedAndStoredAgainIsMarkedAnew: applying a tag again
// (anti-entropy does, every round a repository differs) keeps the first
// mark; a manifest deleted forgets where it was, and stored again is
// marked by the record that brought it back.
func TestAManifestDeletedAndStoredAgainIsMarkedAnew(t *testing.T) {
	const repo = "acks/app"
	const mt = "application/vnd.oci.image.manifest.v1+json"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	m := manifestFor(t, r, repo, "acked")
	d := digest.FromBytes(m)
	present := func(want ...string) {
		t.Helper()
		p, err := r.Presence(ctx, repo, d)
		if err != nil {
			t.Fatal(err)
		}
		got := slices.Sorted(maps.Keys(p))
		if !slices.Equal(got, want) {
			t.Fatalf("present in %v, want %v", got, want)
		}
	}
	if err := r.ApplyManifest(ctx, "westeurope", 1, repo, d, mt, m, v(10, "westeurope"), "v1"); err != nil {
		t.Fatal(err)
	}
	for seq := range int64(3) {
		if err := r.ApplyTag(ctx, "westeurope", 2+seq, repo, "v1", d, v(10, "westeurope"), true); err != nil {
			t.Fatal(err)
		}
	}
	// southeastasia applied westeurope's feed through the first tag
	// record: the mark stays there whatever applied again later.
	if err := r.RecordPeerApplied(ctx, "southeastasia", map[string]int64{"westeurope": 2}, 0); err != nil {
		t.Fatal(err)
	}
	present("eastus", "southeastasia", "westeurope")
	if err := r.ApplyManifestDelete(ctx, "westeurope", 5, repo, d, v(20, "westeurope")); err != nil {
		t.Fatal(err)
	}
	present()
	if err := r.ApplyManifest(ctx, "westeurope", 6, repo, d, mt, m, v(30, "westeurope"), ""); err != nil {
		t.Fatal(err)
	}
	present("eastus", "westeurope") // southeastasia is through 2 only
	if err := r.RecordPeerApplied(ctx, "southeastasia", map[string]int64{"westeurope": 6}, 0); err != nil {
		t.Fatal(err)
	}
	present("eastus", "southeastasia", "westeurope")
}

// TestAReplicatedBlobDeleteUnlinksAndMovesThePeersCursor: a peer's delete
// newer than the link here unlinks the blob and moves the peer's cursor
// in the same transaction; an older one only moves the cursor.
func TestAReplicatedBlobDeleteUnlinksAndMovesThePeersCursor(t *testing.T) {
	const repo = "deletes/cursor"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	d := storeBytes(t, r, []byte("cursor blob"))
	cursor := func(want int64) {
		t.Helper()
		if c, err := r.Cursor(ctx, "eastus"); err != nil || c != want {
			t.Fatalf("eastus's cursor %d (%v), want %d", c, err, want)
		}
	}
	if err := r.ApplyBlob(ctx, "eastus", 1, repo, d, v(10, "eastus"), -1, nil); err != nil {
		t.Fatal(err)
	}
	cursor(1)
	if err := r.ApplyBlobDelete(ctx, "eastus", 2, repo, d, v(5, "eastus")); err != nil {
		t.Fatal(err)
	}
	cursor(2)
	if got := blobState(t, r, repo, d); !strings.HasPrefix(got, "linked=true gone=false") {
		t.Fatalf("after an older delete: %s, want still linked", got)
	}
	if err := r.ApplyBlobDelete(ctx, "eastus", 3, repo, d, v(20, "eastus")); err != nil {
		t.Fatal(err)
	}
	cursor(3)
	if got := blobState(t, r, repo, d); !strings.HasPrefix(got, "linked=false gone=true") {
		t.Fatalf("after a newer delete: %s, want unlinked and gone", got)
	}
}

// TestAManifestHeldHereAndArrivingFromAPeerRecordsThePeer: a replicated
// copy of a manifest this region already holds stores nothing new, but
// records that the peer holds it, and moves the peer's cursor.
func TestAManifestHeldHereAndArrivingFromAPeerRecordsThePeer(t *testing.T) {
	const repo = "deletes/held"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	m := manifestFor(t, r, repo, "held")
	d := digest.FromBytes(m)
	if _, err := r.PutManifest(ctx, repo, d.String(), ociManifest, m); err != nil {
		t.Fatal(err)
	}
	if err := r.ApplyManifest(ctx, "westeurope", 4, repo, d, ociManifest, m, v(10, "westeurope"), ""); err != nil {
		t.Fatal(err)
	}
	p, err := r.Presence(ctx, repo, d)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p["westeurope"]; !ok {
		t.Fatalf("presence %v: the peer that sent a manifest held here is not recorded", p)
	}
	if c, err := r.Cursor(ctx, "westeurope"); err != nil || c != 4 {
		t.Fatalf("westeurope's cursor %d (%v), want 4", c, err)
	}
}

// TestAManifestSeenHeldAndDeletedSinceIsPlannedAgain: a peer's record of a
// manifest this region held when the follower looked, applied after an
// older delete landed here (another peer's follower), changes nothing and
// says so (ErrHeldNoLonger), so the record is planned again and the later
// push wins; a delete newer than the record leaves it applied as held.
func TestAManifestSeenHeldAndDeletedSinceIsPlannedAgain(t *testing.T) {
	const repo = "deletes/raced"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	m := manifestFor(t, r, repo, "raced")
	d := digest.FromBytes(m)
	if err := r.ApplyManifest(ctx, "", 0, repo, d, ociManifest, m, v(10, "eastus"), ""); err != nil {
		t.Fatal(err)
	}
	// Seen held; then westeurope's delete (20) applies; then the record of
	// southeastasia's re-push (30).
	if err := r.ApplyManifestDelete(ctx, "westeurope", 1, repo, d, v(20, "westeurope")); err != nil {
		t.Fatal(err)
	}
	err := r.ApplyManifestHeld(ctx, "southeastasia", 5, repo, d, v(30, "southeastasia"), "")
	if !errors.Is(err, region.ErrHeldNoLonger) {
		t.Fatalf("a held record applied after an older delete: %v, want ErrHeldNoLonger", err)
	}
	if c, _ := r.Cursor(ctx, "southeastasia"); c != 0 {
		t.Fatalf("southeastasia's cursor moved to %d past a record that did not apply", c)
	}
	if err := r.ApplyManifest(ctx, "southeastasia", 5, repo, d, ociManifest, m, v(30, "southeastasia"), ""); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.HasManifest(ctx, repo, d); !ok {
		t.Fatal("the later push lost to the older delete")
	}
	// A delete newer than a held record: the record applies as held, the
	// delete stands.
	if err := r.ApplyManifestDelete(ctx, "westeurope", 2, repo, d, v(40, "westeurope")); err != nil {
		t.Fatal(err)
	}
	if err := r.ApplyManifestHeld(ctx, "southeastasia", 6, repo, d, v(35, "southeastasia"), ""); err != nil {
		t.Fatalf("a held record older than the delete: %v", err)
	}
	if ok, _ := r.HasManifest(ctx, repo, d); ok {
		t.Fatal("an older record revived a deleted manifest")
	}
	if c, _ := r.Cursor(ctx, "southeastasia"); c != 6 {
		t.Fatalf("southeastasia's cursor %d, want 6", c)
	}
}

// TestInvariant2AChildOfALiveIndexIsNotDeleted: a client's delete of a
// manifest a live index lists is refused (UNSUPPORTED naming the index)
// and changes nothing; once the index is gone the child can be deleted.
func TestInvariant2AChildOfALiveIndexIsNotDeleted(t *testing.T) {
	const repo = "deletes/index"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	child := manifestFor(t, r, repo, "child")
	cd := digest.FromBytes(child)
	if _, err := r.PutManifest(ctx, repo, cd.String(), ociManifest, child); err != nil {
		t.Fatal(err)
	}
	index := crashIndex(child)
	res, err := r.PutManifest(ctx, repo, "multi", ociIndex, index)
	if err != nil {
		t.Fatal(err)
	}
	err = r.DeleteManifest(ctx, repo, cd.String())
	if !ocierr.Unsupported.Is(err) || !strings.Contains(err.Error(), res.Digest.String()) {
		t.Fatalf("deleting a child of a live index: %v; want UNSUPPORTED naming %s", err, res.Digest)
	}
	if ok, _ := r.HasManifest(ctx, repo, cd); !ok {
		t.Fatal("a refused delete removed the child")
	}
	if err := r.DeleteManifest(ctx, repo, res.Digest.String()); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteManifest(ctx, repo, cd.String()); err != nil {
		t.Fatalf("deleting the child once its index is gone: %v", err)
	}
}
