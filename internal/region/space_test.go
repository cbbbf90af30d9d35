package region_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/content/contenttest"
	contentfs "github.com/georeg/georeg/internal/content/fs"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// fillingRegion opens a region whose content store fails writes with
// ENOSPC on command (a disk that fills), with its space monitor running
// and the free-space threshold off (the test's disk is not the one that
// fills).
func fillingRegion(t *testing.T) (*region.Region, *contenttest.Filling, string) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	db, err := meta.OpenSQLite(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	backend, err := contentfs.Open(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	disk := contenttest.NewFilling(backend)
	r, err := region.New(ctx, region.Config{Name: "eastus", DataDir: dir, MinFreeSpace: -1},
		slog.New(slog.DiscardHandler), db, content.New(disk))
	if err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.RunSpace(mctx) }()
	t.Cleanup(func() { stop(); <-done; r.Close() })
	return r, disk, filepath.Join(dir, "content", "uploads")
}

// stagedBytes sums the staging data under dir (uploads in progress,
// <id>.data, or <id>/data as versions before 2026-12-06 staged them,
// and broken fetches kept to resume).
func stagedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || e.IsDir() {
			return err
		}
		info, err := e.Info()
		if err == nil && (e.Name() == "data" || strings.HasSuffix(e.Name(), ".data")) {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// storageFull checks that err is the STORAGE_FULL a push gets: 507, a
// Retry-After, a message naming the region and what to do.
func storageFull(t *testing.T, what string, err error) {
	t.Helper()
	e, ok := ocierr.From(err)
	if !ok || !ocierr.StorageFull.Is(err) {
		t.Fatalf("%s: %v, want STORAGE_FULL", what, err)
	}
	if e.Code.Status != http.StatusInsufficientStorage || e.RetryAfter <= 0 {
		t.Fatalf("%s: status %d, Retry-After %s; want 507 with a Retry-After", what, e.Code.Status, e.RetryAfter)
	}
	for _, want := range []string{"region eastus", "out of storage space", "push through another region"} {
		if !strings.Contains(e.Message, want) {
			t.Fatalf("%s: message %q does not say %q", what, e.Message, want)
		}
	}
}

// eventuallyTrue waits up to 10 s for cond.
func eventuallyTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAFullDiskIsAStateTheRegionLeavesByItself: a chunk that hits ENOSPC
// gets STORAGE_FULL, its session's bytes are released at once, the region
// says it is not writable (and why) while it still serves pulls, and it is
// writable again within seconds of space coming back, waking replication
// (SpaceBack), without a restart (invariant 10).
func TestAFullDiskIsAStateTheRegionLeavesByItself(t *testing.T) {
	ctx := t.Context()
	r, disk, uploads := fillingRegion(t)
	kept := bytes.Repeat([]byte("k"), 10_000)
	if _, err := r.PutBlob(ctx, "app", digest.FromBytes(kept), int64(len(kept)), bytes.NewReader(kept)); err != nil {
		t.Fatal(err)
	}
	id, err := r.StartUpload(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendUpload(ctx, "app", id, chunk(bytes.Repeat([]byte("a"), 50_000))); err != nil {
		t.Fatal(err)
	}
	back := r.SpaceBack()
	disk.FillAfter(20_000)
	_, err = r.AppendUpload(ctx, "app", id, chunk(bytes.Repeat([]byte("b"), 50_000)))
	storageFull(t, "a chunk that fills the disk", err)
	if n := stagedBytes(t, uploads); n != 0 {
		t.Fatalf("the full disk still holds %d bytes of the discarded upload", n)
	}
	if _, err := r.UploadStatus(ctx, "app", id); !ocierr.BlobUploadUnknown.Is(err) {
		t.Fatalf("the discarded session: %v, want BLOB_UPLOAD_UNKNOWN", err)
	}
	if ok, why := r.Writable(); ok || !strings.Contains(why, "no space left") {
		t.Fatalf("writable %t (%q), want not writable, saying the disk is full", ok, why)
	}
	storageFull(t, "a push while full", r.CheckWritable())
	// Pulls are served.
	rc, _, err := r.OpenBlob(ctx, "app", digest.FromBytes(kept), 0)
	if err != nil {
		t.Fatalf("a pull while full: %v", err)
	}
	rc.Close()
	// The monitor's probe write fails while the disk stays full.
	time.Sleep(1500 * time.Millisecond)
	if ok, _ := r.Writable(); ok {
		t.Fatal("writable again while the disk is still full")
	}
	disk.Free()
	select {
	case <-back:
	case <-time.After(10 * time.Second):
		t.Fatal("SpaceBack not closed within 10 s of space coming back")
	}
	if ok, why := r.Writable(); !ok {
		t.Fatalf("not writable after space came back: %s", why)
	}
	data := bytes.Repeat([]byte("c"), 30_000)
	if _, err := r.PutBlob(ctx, "app", digest.FromBytes(data), int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("a push after space came back: %v", err)
	}
}

// TestAFetchThatFillsTheDiskReleasesItsBytes: a replication fetch that
// hits ENOSPC releases what it staged (the disk needs every byte back);
// one that breaks for the peer's reasons keeps exactly what arrived, and
// the next attempt resumes from there.
func TestAFetchThatFillsTheDiskReleasesItsBytes(t *testing.T) {
	ctx := t.Context()
	r, disk, uploads := fillingRegion(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 20_000) // 320,000 bytes
	d := digest.FromBytes(data)
	id := region.FetchStagingID(d)
	var offsets []int64
	breakAt := int64(100_000)
	open := func(_ context.Context, offset int64) (io.ReadCloser, error) {
		offsets = append(offsets, offset)
		rd := io.Reader(bytes.NewReader(data[offset:]))
		if breakAt > 0 {
			rd = io.MultiReader(io.LimitReader(rd, breakAt-offset), failing{})
		}
		return io.NopCloser(rd), nil
	}
	// The peer breaks off: what arrived is kept, counted exactly.
	if streamed, err := r.FetchBlob(ctx, id, d, int64(len(data)), open, nil); err == nil || streamed {
		t.Fatalf("a fetch the peer broke off: streamed %v, %v; want an error, nothing streamed (no client)", streamed, err)
	}
	if got := r.PartialBytes(); got != breakAt {
		t.Fatalf("kept %d bytes of the broken fetch, want %d", got, breakAt)
	}
	if n := stagedBytes(t, uploads); n != breakAt {
		t.Fatalf("%d bytes staged on disk, want %d", n, breakAt)
	}
	// The disk fills during the next attempt: everything is released.
	disk.FillAfter(50_000)
	breakAt = 0
	streamed, err := r.FetchBlob(ctx, id, d, int64(len(data)), open, nil)
	if !region.IsNoSpace(err) || streamed {
		t.Fatalf("a fetch on a full disk: streamed %v, %v; want storage full, nothing streamed (no client)", streamed, err)
	}
	if got, n := r.PartialBytes(), stagedBytes(t, uploads); got != 0 || n != 0 {
		t.Fatalf("after ENOSPC: %d bytes counted, %d staged; want both released", got, n)
	}
	if ok, _ := r.Writable(); ok {
		t.Fatal("still writable after a fetch found the disk full")
	}
	disk.Free()
	eventuallyTrue(t, "writable again", func() bool { ok, _ := r.Writable(); return ok })
	if _, err := r.FetchBlob(ctx, id, d, int64(len(data)), open, nil); err != nil {
		t.Fatalf("the fetch once space is back: %v", err)
	}
	if len(offsets) != 3 || offsets[1] != 100_000 || offsets[2] != 0 {
		t.Fatalf("fetches asked from offsets %v, want [0 100000 0] (resume after the break, start over after ENOSPC)", offsets)
	}
	if _, ok, err := r.HasContent(ctx, d); !ok || err != nil {
		t.Fatalf("blob not stored: %t %v", ok, err)
	}
	if got, n := r.PartialBytes(), stagedBytes(t, uploads); got != 0 || n != 0 {
		t.Fatalf("after the fetch: %d bytes counted, %d staged", got, n)
	}
}

// failing is a reader that breaks, as a connection the peer reset.
type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

// TestAMetadataStoreThatRefusesWritesMakesTheRegionPullOnly: a write the
// metadata store refuses (SQLite opened read-only underneath the region)
// makes the region not writable, saying why, with READ_ONLY (503 and a
// Retry-After) for pushes and pulls still served; once the store takes
// writes again the monitor's probe finds it and the region is writable.
func TestAMetadataStoreThatRefusesWritesMakesTheRegionPullOnly(t *testing.T) {
	ctx := t.Context()
	r, _, _ := fillingRegion(t)
	data := []byte("held before")
	if _, err := r.PutBlob(ctx, "app", digest.FromBytes(data), int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("upload 1: attempt to write a readonly database (8)")
	err := r.NoteWrite(refused)
	e, ok := ocierr.From(err)
	if !ok || e.Code != ocierr.ReadOnly || e.Code.Status != http.StatusServiceUnavailable || e.RetryAfter <= 0 ||
		!strings.Contains(e.Message, "region eastus takes no writes") || !strings.Contains(e.Message, "refuses writes") {
		t.Fatalf("a refused write: %v, want READ_ONLY 503 with a Retry-After naming the region and the cause", err)
	}
	if ok, why := r.Writable(); ok || !strings.Contains(why, "metadata store refuses writes") {
		t.Fatalf("writable %t (%q), want pull-only, saying the store refuses writes", ok, why)
	}
	if err := r.CheckWritable(); !ocierr.ReadOnly.Is(err) {
		t.Fatalf("a push while read-only: %v", err)
	}
	rc, _, err := r.OpenBlob(ctx, "app", digest.FromBytes(data), 0)
	if err != nil {
		t.Fatalf("a pull while read-only: %v", err)
	}
	rc.Close()
	// The store here takes writes: the probe clears the state.
	eventuallyTrue(t, "writable again once the store takes writes", func() bool { ok, _ := r.Writable(); return ok })
	if err := r.NoteWrite(errors.New("some other failure")); ocierr.ReadOnly.Is(err) || ocierr.StorageFull.Is(err) {
		t.Fatalf("an unrelated error marked the region: %v", err)
	}
	if ok, _ := r.Writable(); !ok {
		t.Fatal("an unrelated error made the region not writable")
	}
}
