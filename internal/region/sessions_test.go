package region_test

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// TestExpiryEndsIdleSessionsOnlyAndEveryOneOfThem: a sweep ends every
// session idle for longer than the TTL, more than one batch of them, and
// no session younger than that.
func TestExpiryEndsIdleSessionsOnlyAndEveryOneOfThem(t *testing.T) {
	ctx := t.Context()
	r := open(t, t.TempDir(), time.Hour)
	defer r.Close()
	clock := region.UseTestClock(r)
	var idle []string
	for i := range 150 { // more than one batch of 100
		id, err := r.StartUpload(ctx, "sessions/app")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.AppendUpload(ctx, "sessions/app", id, chunk([]byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
		idle = append(idle, id)
	}
	clock.Advance(61 * time.Minute)
	young, err := r.StartUpload(ctx, "sessions/app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendUpload(ctx, "sessions/app", young, chunk([]byte("young"))); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Minute)
	if err := r.ExpireUploads(ctx); err != nil {
		t.Fatal(err)
	}
	left := 0
	for _, id := range idle {
		if _, err := r.UploadStatus(ctx, "sessions/app", id); !ocierr.BlobUploadUnknown.Is(err) {
			left++
		}
	}
	if left > 0 {
		t.Fatalf("%d of %d sessions idle for 91 minutes (TTL 1h) were not ended by one sweep", left, len(idle))
	}
	if n, err := r.UploadStatus(ctx, "sessions/app", young); err != nil || n != 5 {
		t.Fatalf("a session idle for 30 minutes: %d bytes, %v; want it kept with 5", n, err)
	}
}

// TestAChunkIsTakenForWhatItDeclares: a chunk declaring 0 bytes appends
// nothing even with a body; a streamed chunk (length unknown) appends its
// whole body; a chunk that starts anywhere but the session's end, 0
// included, is refused with RANGE_INVALID and changes nothing; a session
// is its repository's only, also read back from its row after a restart.
func TestAChunkIsTakenForWhatItDeclares(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	r := open(t, dir, time.Hour)
	id, err := r.StartUpload(ctx, "chunks/app")
	if err != nil {
		t.Fatal(err)
	}
	size := func(want int64) {
		t.Helper()
		if n, err := r.UploadStatus(ctx, "chunks/app", id); err != nil || n != want {
			t.Fatalf("session holds %d bytes (%v), want %d", n, err, want)
		}
	}
	if n, err := r.AppendUpload(ctx, "chunks/app", id, region.Chunk{Start: -1, Length: -1, Body: bytes.NewReader([]byte("streamed"))}); err != nil || n != 8 {
		t.Fatalf("a streamed chunk: %d, %v; want 8", n, err)
	}
	if n, err := r.AppendUpload(ctx, "chunks/app", id, region.Chunk{Start: -1, Length: 0, Body: bytes.NewReader([]byte("ignored"))}); err != nil || n != 8 {
		t.Fatalf("a chunk declaring 0 bytes: %d, %v; want 8", n, err)
	}
	size(8)
	for _, start := range []int64{0, 3, 9} {
		_, err := r.AppendUpload(ctx, "chunks/app", id, region.Chunk{Start: start, Length: 2, Body: bytes.NewReader([]byte("no"))})
		if !ocierr.RangeInvalid.Is(err) {
			t.Fatalf("a chunk starting at %d of 8: %v; want RANGE_INVALID", start, err)
		}
		size(8)
	}
	if _, err := r.AppendUpload(ctx, "chunks/app", id, region.Chunk{Start: 8, Length: 4, Body: bytes.NewReader([]byte("tail"))}); err != nil {
		t.Fatal(err)
	}
	size(12)
	r.Close()

	r = open(t, dir, time.Hour)
	defer r.Close()
	if _, err := r.AppendUpload(ctx, "chunks/other", id, chunk([]byte("x"))); !ocierr.BlobUploadUnknown.Is(err) {
		t.Fatalf("the session used with another repository after a restart: %v; want BLOB_UPLOAD_UNKNOWN", err)
	}
	if _, err := r.UploadStatus(ctx, "chunks/other", id); !ocierr.BlobUploadUnknown.Is(err) {
		t.Fatalf("its status asked in another repository: %v; want BLOB_UPLOAD_UNKNOWN", err)
	}
	size(12)
	want := []byte("streamedtail")
	if _, err := r.FinishUpload(ctx, "chunks/app", id, digest.FromBytes(want), chunk(nil)); err != nil {
		t.Fatalf("finishing the session with what it was given: %v", err)
	}
	// The session ends with the blob, and the blob's feed record is written.
	if _, err := r.UploadStatus(ctx, "chunks/app", id); !ocierr.BlobUploadUnknown.Is(err) {
		t.Fatalf("the finished session's status: %v; want BLOB_UPLOAD_UNKNOWN", err)
	}
	recs, err := r.Feed(ctx, 0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(recs, func(rec meta.Record) bool {
		return rec.Kind == meta.KindBlob && rec.Repo == "chunks/app" && rec.Digest == digest.FromBytes(want) && rec.Size == 12
	}) {
		t.Fatalf("no feed record of the uploaded blob in %+v", recs)
	}
}
