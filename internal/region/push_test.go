package region_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// TestAPushLeavesEveryEffect: a manifest pushed with a tag resolves by
// it, is present here, is in the feed as a manifest record and a tag
// record (in that order, both naming the tag), and in the audit log; a
// push by digest of an artifact whose subject is that manifest is listed
// as its referrer, filtered by artifact type; a replicated manifest is
// acknowledged in this region's feed and present here and at its origin.
func TestAPushLeavesEveryEffect(t *testing.T) {
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	m := manifestFor(t, r, "push/app", "effects")
	res, err := r.PutManifest(ctx, "push/app", "v1", "application/vnd.oci.image.manifest.v1+json", m)
	if err != nil {
		t.Fatal(err)
	}
	d := res.Digest
	if got, err := r.ResolveTag(ctx, "push/app", "v1"); err != nil || got != d {
		t.Fatalf("v1 resolves to %s (%v)", got, err)
	}
	st, err := r.ImageStatus(ctx, "push/app", "v1")
	if err != nil || !st.Here || st.Present["eastus"].IsZero() {
		t.Fatalf("status after the push: %+v %v", st, err)
	}
	recs, err := r.Feed(ctx, 0, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, rec := range recs {
		if rec.Digest == d {
			kinds = append(kinds, rec.Kind+":"+rec.Tag)
		}
	}
	if want := []string{meta.KindManifest + ":v1", meta.KindTag + ":v1"}; !slices.Equal(kinds, want) {
		t.Fatalf("feed records of the push %v, want %v", kinds, want)
	}
	audit, err := r.Audit(ctx, time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(audit, func(e meta.AuditEntry) bool {
		return e.Repo == "push/app" && e.Reference == "v1" && e.Digest == d.String() && e.Outcome == "ok"
	}) {
		t.Fatalf("no audit entry of the push in %+v", audit)
	}

	// A referrer, by digest.
	cfg := []byte(`{}`)
	if _, err := r.PutBlob(ctx, "push/app", digest.FromBytes(cfg), 2, bytes.NewReader(cfg)); err != nil {
		t.Fatal(err)
	}
	art := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sig","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d}}`,
		digest.FromBytes(cfg), d, len(m))
	ares, err := r.PutManifest(ctx, "push/app", digest.FromBytes(art).String(), "application/vnd.oci.image.manifest.v1+json", art)
	if err != nil || ares.Subject != d {
		t.Fatalf("referrer push: %+v %v", ares, err)
	}
	for filter, want := range map[string]int{"": 1, "application/vnd.example.sig": 1, "application/vnd.example.sbom": 0} {
		refs, _, err := r.Referrers(ctx, "push/app", d, filter, "", 1000, 4<<20)
		if err != nil || len(refs) != want || (want == 1 && (refs[0].Digest != ares.Digest || refs[0].ArtifactType != "application/vnd.example.sig")) {
			t.Fatalf("referrers filtered by %q: %+v %v, want %d", filter, refs, err, want)
		}
	}

	// A replicated manifest without a tag: acknowledged here at once.
	m2 := manifestFor(t, r, "push/app", "replicated")
	d2 := digest.FromBytes(m2)
	if err := r.ApplyManifest(ctx, "westeurope", 1, "push/app", d2, "application/vnd.oci.image.manifest.v1+json", m2, v(time.Now().UnixMilli()<<16, "westeurope"), ""); err != nil {
		t.Fatal(err)
	}
	st, err = r.ImageStatus(ctx, "push/app", d2.String())
	if err != nil || !st.Here || st.Present["eastus"].IsZero() || st.Present["westeurope"].IsZero() {
		t.Fatalf("status of a replicated manifest: %+v %v", st, err)
	}
	if kinds := feedKinds(t, r, d2, ""); len(kinds) > 0 {
		t.Fatalf("feed records of a replicated manifest: %v, want none", kinds)
	}
}

// TestAManifestOfTheLimitIsTakenAndOneByteMoreIsNot: the size limit is
// inclusive, and a larger manifest is refused before anything is stored.
func TestAManifestOfTheLimitIsTakenAndOneByteMoreIsNot(t *testing.T) {
	ctx := t.Context()
	sizer := open(t, t.TempDir(), 0)
	m := manifestFor(t, sizer, "limit/app", "limit") // just to know its size
	sizer.Close()
	dir := t.TempDir()
	r := openRegion(t, region.Config{Name: "eastus", DataDir: dir, MaxManifestSize: int64(len(m) + 10)})
	defer r.Close()
	m = manifestFor(t, r, "limit/app", "limit")
	// Pad the JSON with spaces to the limit: still valid, another digest.
	exact := append(bytes.Clone(m[:len(m)-1]), []byte(strings.Repeat(" ", 10)+"}")...)
	if _, err := r.PutManifest(ctx, "limit/app", "exact", "application/vnd.oci.image.manifest.v1+json", exact); err != nil {
		t.Fatalf("a manifest of exactly the limit: %v", err)
	}
	over := append(bytes.Clone(m[:len(m)-1]), []byte(strings.Repeat(" ", 11)+"}")...)
	if _, err := r.PutManifest(ctx, "limit/app", "over", "application/vnd.oci.image.manifest.v1+json", over); !ocierr.ManifestTooLarge.Is(err) {
		t.Fatalf("one byte over the limit: %v, want MANIFEST_TOO_LARGE", err)
	}
	if _, err := r.ResolveTag(ctx, "limit/app", "over"); err == nil {
		t.Fatal("a refused manifest's tag was set")
	}
}

// TestAnUploadSessionRefusesWhatDoesNotFitItAndKeepsWhatArrived: a session
// is unknown in another repository and after it ends; a chunk that does
// not start where the session ends is RANGE_INVALID and changes nothing;
// one that starts there (Start = size, including 0) is taken; a chunk cut
// short keeps what arrived and says SIZE_INVALID; status reports the size
// every node continues from.
func TestAnUploadSessionRefusesWhatDoesNotFitItAndKeepsWhatArrived(t *testing.T) {
	ctx := t.Context()
	r := open(t, t.TempDir(), time.Hour)
	defer r.Close()
	id, err := r.StartUpload(ctx, "up/app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendUpload(ctx, "other/app", id, chunk([]byte("x"))); !ocierr.BlobUploadUnknown.Is(err) {
		t.Fatalf("the session in another repository: %v", err)
	}
	if _, err := r.UploadStatus(ctx, "other/app", id); !ocierr.BlobUploadUnknown.Is(err) {
		t.Fatalf("status in another repository: %v", err)
	}
	at := func(start int64, b []byte) region.Chunk {
		return region.Chunk{Start: start, Length: int64(len(b)), Body: bytes.NewReader(b)}
	}
	if n, err := r.AppendUpload(ctx, "up/app", id, at(0, []byte("01234"))); err != nil || n != 5 {
		t.Fatalf("a chunk at 0: %d %v", n, err)
	}
	for _, start := range []int64{4, 6} {
		if n, err := r.AppendUpload(ctx, "up/app", id, at(start, []byte("zz"))); !ocierr.RangeInvalid.Is(err) || n != 5 {
			t.Fatalf("a chunk at %d of a 5-byte session: %d %v, want 5 RANGE_INVALID", start, n, err)
		}
	}
	if n, err := r.AppendUpload(ctx, "up/app", id, at(5, []byte("56789"))); err != nil || n != 10 {
		t.Fatalf("a chunk at 5: %d %v", n, err)
	}
	short := region.Chunk{Start: 10, Length: 5, Body: bytes.NewReader([]byte("ab"))}
	if n, err := r.AppendUpload(ctx, "up/app", id, short); !ocierr.SizeInvalid.Is(err) || n != 12 {
		t.Fatalf("a chunk cut short: %d %v, want 12 SIZE_INVALID", n, err)
	}
	if size, err := r.UploadStatus(ctx, "up/app", id); err != nil || size != 12 {
		t.Fatalf("status: %d %v, want 12", size, err)
	}
	whole := []byte("0123456789ab")
	if n, err := r.FinishUpload(ctx, "up/app", id, digest.FromBytes(whole), chunk(nil)); err != nil || n != 12 {
		t.Fatalf("finish: %d %v", n, err)
	}
	if err := wholeBlob(ctx, r, "up/app", digest.FromBytes(whole), 12); err != nil {
		t.Fatal(err)
	}
	if _, err := r.UploadStatus(ctx, "up/app", id); !ocierr.BlobUploadUnknown.Is(err) {
		t.Fatalf("a finished session: %v", err)
	}
}
