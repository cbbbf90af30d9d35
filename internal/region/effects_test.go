package region_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/region"
)

// feedKinds returns the kinds of r's feed records about d (or the tag).
func feedKinds(t *testing.T, r *region.Region, d digest.Digest, tag string) []string {
	t.Helper()
	recs, err := r.Feed(t.Context(), 0, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rec := range recs {
		if (d != "" && rec.Digest == d) || (tag != "" && rec.Tag == tag && rec.Kind != meta.KindSetting) {
			out = append(out, rec.Kind)
		}
	}
	return out
}

// TestEveryChangeLeavesItsTombstoneRecordCursorAndCache: a local blob
// delete leaves a tombstone and a feed record at the same version; a
// replicated tag write, tag delete and manifest delete each move the
// peer's cursor to their record and are seen at once by a read the cache
// served before.
func TestEveryChangeLeavesItsTombstoneRecordCursorAndCache(t *testing.T) {
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()

	// A blob delete: unlinked, tombstoned, recorded.
	blob := []byte("a blob to delete")
	d := storeBytes(t, r, blob)
	if _, err := r.PutBlob(ctx, "fx/app", d, int64(len(blob)), bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteBlob(ctx, "fx/app", d); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.HasBlob(ctx, "fx/app", d); ok {
		t.Fatal("a deleted blob is still linked")
	}
	tv, deleted, err := r.Tombstone(ctx, "fx/app", d.String())
	if err != nil || !deleted || tv.IsZero() {
		t.Fatalf("blob tombstone: %v %v %v", tv, deleted, err)
	}
	if kinds := feedKinds(t, r, d, ""); len(kinds) != 2 || kinds[1] != meta.KindBlobDelete {
		t.Fatalf("feed records of the blob: %v, want its push then %s", kinds, meta.KindBlobDelete)
	}

	// Replicated changes, each read through the cache first.
	one := manifestFor(t, r, "fx/app", "one")
	two := manifestFor(t, r, "fx/app", "two")
	d1, d2 := digest.FromBytes(one), digest.FromBytes(two)
	for i, m := range [][]byte{one, two} {
		if err := r.ApplyManifest(ctx, "westeurope", int64(i+1), "fx/app", digest.FromBytes(m), "application/vnd.oci.image.manifest.v1+json", m, v(int64(10+i), "westeurope"), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.ApplyTag(ctx, "westeurope", 3, "fx/app", "v1", d1, v(20, "westeurope"), true); err != nil {
		t.Fatal(err)
	}
	cursor := func(want int64) {
		t.Helper()
		if got, err := r.Cursor(ctx, "westeurope"); err != nil || got != want {
			t.Fatalf("westeurope's cursor %d (%v), want %d", got, err, want)
		}
	}
	resolves := func(want digest.Digest) {
		t.Helper()
		for range 2 { // the second read comes from the cache
			got, err := r.ResolveTag(ctx, "fx/app", "v1")
			if want == "" && err == nil {
				t.Fatalf("v1 resolves to %s after its delete", got)
			}
			if want != "" && (err != nil || got != want) {
				t.Fatalf("v1 resolves to %s (%v), want %s", got, err, want)
			}
		}
	}
	cursor(3)
	resolves(d1)
	if err := r.ApplyTag(ctx, "westeurope", 4, "fx/app", "v1", d2, v(30, "westeurope"), true); err != nil {
		t.Fatal(err)
	}
	cursor(4)
	resolves(d2)
	if err := r.ApplyTagDelete(ctx, "westeurope", 5, "fx/app", "v1", v(40, "westeurope")); err != nil {
		t.Fatal(err)
	}
	cursor(5)
	resolves("")
	if _, deleted, _ := r.Tombstone(ctx, "fx/app", "v1"); !deleted {
		t.Fatal("no tombstone of the deleted tag")
	}
	for range 2 {
		if _, err := r.GetManifest(ctx, "fx/app", d2.String()); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.ApplyManifestDelete(ctx, "westeurope", 6, "fx/app", d2, v(50, "westeurope")); err != nil {
		t.Fatal(err)
	}
	cursor(6)
	if _, err := r.GetManifest(ctx, "fx/app", d2.String()); err == nil {
		t.Fatal("a manifest deleted by a peer is still served (from the cache)")
	}
	if kinds := feedKinds(t, r, d2, ""); len(kinds) > 0 {
		t.Fatalf("a replicated change was recorded in this region's feed: %v", kinds)
	}
}

// TestFeedRecordsCarrySmallContentInline: a blob of exactly InlineMax
// bytes and a manifest ride inside their feed records; a blob one byte
// larger does not; a long poll with nothing new ends empty at its wait.
func TestFeedRecordsCarrySmallContentInline(t *testing.T) {
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	small, large := bytes.Repeat([]byte("s"), region.InlineMax), bytes.Repeat([]byte("l"), region.InlineMax+1)
	for _, b := range [][]byte{small, large} {
		if _, err := r.PutBlob(ctx, "inline/app", digest.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	m := manifestFor(t, r, "inline/app", "inline")
	if _, err := r.PutManifest(ctx, "inline/app", "v1", "application/vnd.oci.image.manifest.v1+json", m); err != nil {
		t.Fatal(err)
	}
	recs, err := r.Feed(ctx, 0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var sawSmall, sawLarge, sawManifest bool
	for _, rec := range recs {
		switch {
		case rec.Digest == digest.FromBytes(small):
			sawSmall = bytes.Equal(rec.Data, small)
		case rec.Digest == digest.FromBytes(large):
			sawLarge = true
			if rec.Data != nil {
				t.Fatalf("a blob of InlineMax+1 bytes rode inline")
			}
		case rec.Kind == meta.KindManifest:
			sawManifest = bytes.Equal(rec.Data, m)
		}
	}
	if !sawSmall || !sawLarge || !sawManifest {
		t.Fatalf("records: small inline %v, large seen %v, manifest inline %v", sawSmall, sawLarge, sawManifest)
	}
	head, err := r.FeedHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if recs, err := r.Feed(ctx, head, 100, 50*time.Millisecond); err != nil || len(recs) != 0 {
		t.Fatalf("a poll past the head: %d records, %v", len(recs), err)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("a poll with nothing new returned before its wait")
	}
}
