package region_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"))
}

func chunk(b []byte) region.Chunk {
	return region.Chunk{Start: -1, Length: int64(len(b)), Body: bytes.NewReader(b)}
}

func TestUploadSessionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	data := bytes.Repeat([]byte("0123456789"), 50_000)
	r := open(t, dir, time.Hour)
	id, err := r.StartUpload(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendUpload(ctx, "app", id, chunk(data[:300_000])); err != nil {
		t.Fatal(err)
	}
	r.Close()

	r = open(t, dir, time.Hour)
	defer r.Close()
	size, err := r.UploadStatus(ctx, "app", id)
	if err != nil || size != 300_000 {
		t.Fatalf("status after restart: %d, %v", size, err)
	}
	if _, err := r.AppendUpload(ctx, "app", id, chunk(data[300_000:])); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(data)
	if _, err := r.FinishUpload(ctx, "app", id, d, chunk(nil)); err != nil {
		t.Fatal(err)
	}
	rc, n, err := r.OpenBlob(ctx, "app", d, 0)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("open: %d %v", n, err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("resumed blob differs")
	}
}

func TestAbandonedUploadsExpire(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	r := open(t, dir, time.Millisecond)
	defer r.Close()
	id, err := r.StartUpload(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendUpload(ctx, "app", id, chunk([]byte("abandoned"))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := r.ExpireUploads(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := r.UploadStatus(ctx, "app", id); ocierr.BlobUploadUnknown.Is(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session never expired")
		}
		time.Sleep(5 * time.Millisecond) // wait for the 1 ms TTL to pass
	}
	counts, err := r.Counts(ctx)
	if err != nil || counts["uploads"] != 0 {
		t.Fatalf("upload rows left: %v %v", counts, err)
	}
}

// TestDrainEndsFeedLongPolls: a long-poll waiting on an empty feed returns
// an empty page as soon as the node drains (shuts down), and later ones
// return at once, so a peer's long-poll never holds up a graceful shutdown.
func TestDrainEndsFeedLongPolls(t *testing.T) {
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	got := make(chan error, 1)
	go func() {
		recs, err := r.Feed(t.Context(), 0, 10, time.Hour)
		if err == nil && len(recs) > 0 {
			err = fmt.Errorf("records from an empty feed")
		}
		got <- err
	}()
	r.Drain()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if recs, err := r.Feed(t.Context(), 0, 10, time.Hour); err != nil || len(recs) != 0 {
		t.Fatalf("after drain: %v %v", recs, err)
	}
}
