package region

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/content/contenttest"
	contents3 "github.com/georeg/georeg/internal/content/s3"
	"github.com/georeg/georeg/internal/storetest"
)

// commitHook is a backend that runs after once the object at key is
// committed (a blob's bytes in place, not yet linked).
type commitHook struct {
	content.Backend
	key   string
	after func()
}

// Close closes the backend it wraps: the region closes its store's
// backend, whose kept connections would otherwise outlive the test.
func (h *commitHook) Close() error { return contenttest.CloseWrapped(h.Backend) }

func (h *commitHook) Writer(ctx context.Context, key string, opts content.WriterOptions) (content.Writer, error) {
	w, err := h.Backend.Writer(ctx, key, opts)
	return &hookedWriter{Writer: w, h: h}, err
}

type hookedWriter struct {
	content.Writer
	h *commitHook
}

func (w *hookedWriter) Commit(ctx context.Context, key string) error {
	err := w.Writer.Commit(ctx, key)
	if err == nil && key == w.h.key && w.h.after != nil {
		after := w.h.after
		w.h.after = nil
		after()
	}
	return err
}

// sharedNodes opens n nodes of region eastus on one fresh PostgreSQL
// database and S3 bucket.
func sharedNodes(t *testing.T, names ...string) []*Region {
	t.Helper()
	dsn, bucket := storetest.Postgres(t), storetest.S3Bucket(t)
	var out []*Region
	for _, n := range names {
		r, err := Open(t.Context(), Config{Name: "eastus", Node: n, DataDir: t.TempDir(), GCGrace: time.Hour, GCInterval: -1,
			Metadata: MetadataConfig{Driver: "postgres", DSN: dsn},
			Content: ContentConfig{Driver: "s3", S3: contents3.Config{Endpoint: bucket.Endpoint, Bucket: bucket.Bucket,
				AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey, PartSize: 5 << 20}}},
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		out = append(out, r)
	}
	return out
}

// TestASweepOnAnotherNodeNeverLeavesALinkWithoutItsBytes: node a of a
// region on PostgreSQL and S3 pushes a blob; node b's garbage collection
// (its clock two hours on, so every blob looks older than the grace
// period) runs between a's commit of the bytes and a's link. Leases are
// a node's own, so b cannot see a's; whatever b does, a must not link
// bytes b deleted: the push either fails (upload again) or the blob is
// linked with its bytes. b keeps them: a holds them under a lease every
// node's collection sees.
func TestASweepOnAnotherNodeNeverLeavesALinkWithoutItsBytes(t *testing.T) {
	ctx := t.Context()
	nodes := sharedNodes(t, "a", "b")
	a, b := nodes[0], nodes[1]
	UseTestClock(b).Advance(2 * time.Hour)
	blob := []byte("bytes a node commits while another collects")
	d := digest.FromBytes(blob)
	var swept GCReport
	a.store = content.New(&commitHook{Backend: a.store.Backend(), key: content.BlobKey(d), after: func() {
		var err error
		if swept, err = b.GC(ctx, false); err != nil {
			t.Errorf("node b's collection: %v", err)
		}
	}})
	_, pushErr := a.PutBlob(ctx, "app", d, int64(len(blob)), bytes.NewReader(blob))
	if swept.Started.IsZero() {
		t.Fatal("node b's collection did not run between a's commit and a's link")
	}
	linked, err := a.HasBlob(ctx, "app", d)
	if err != nil {
		t.Fatal(err)
	}
	_, statErr := a.store.Stat(ctx, d)
	if linked && statErr != nil {
		t.Fatalf("the blob is linked and its bytes are gone (%v): node b's collection (%+v) deleted them between a's commit and a's link", statErr, swept)
	}
	if pushErr != nil || !linked || statErr != nil {
		t.Fatalf("the push: %v; linked %v, bytes %v; node b's collection %+v: it should have kept bytes a node holds under a lease", pushErr, linked, statErr, swept)
	}
}
