package region

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/content/contenttest"
	"github.com/georeg/georeg/internal/meta"
)

// openOneNode opens a region of one node on SQLite and the filesystem,
// with a 1 h grace period and no collection of its own; closed when t
// ends.
func openOneNode(t *testing.T) *Region {
	t.Helper()
	r, err := Open(t.Context(), Config{Name: "eastus", DataDir: t.TempDir(), GCGrace: time.Hour, GCInterval: -1},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// statCounter counts the content store's answers about blobs.
type statCounter struct {
	content.Backend
	n atomic.Int64
}

func (s *statCounter) Close() error { return contenttest.CloseWrapped(s.Backend) }

func (s *statCounter) Stat(ctx context.Context, key string) (int64, error) {
	if strings.HasPrefix(key, "blobs/") {
		s.n.Add(1)
	}
	return s.Backend.Stat(ctx, key)
}

// TestALinkAsksTheStoreUnlessItsWriterLeasedTheBytes: a monolithic
// upload and a session, however long it ran, link without asking the
// content store (on S3 a request inside the write transaction): each
// leased the blob before writing its bytes, and on one node the sweep
// checks that node's leases. A mount (bytes written by someone else,
// perhaps long ago) asks once: under a lease it takes first, not again
// inside the link's transaction.
func TestALinkAsksTheStoreUnlessItsWriterLeasedTheBytes(t *testing.T) {
	ctx := t.Context()
	r := openOneNode(t)
	clock := UseTestClock(r)
	counter := &statCounter{Backend: r.store.Backend()}
	r.store = content.New(counter)
	stats := func(name string, want func(int64) bool, fn func() error) {
		t.Helper()
		before := counter.n.Load()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := counter.n.Load() - before; !want(n) {
			t.Errorf("%s: the content store was asked about blobs %d times", name, n)
		}
	}
	none := func(n int64) bool { return n == 0 }
	session := func(b []byte, age time.Duration) func() error {
		return func() error {
			id, err := r.StartUpload(ctx, "app")
			if err != nil {
				return err
			}
			clock.Advance(age)
			_, err = r.FinishUpload(ctx, "app", id, digest.FromBytes(b), Chunk{Start: -1, Length: int64(len(b)), Body: bytes.NewReader(b)})
			return err
		}
	}
	mono := []byte("pushed in one request")
	stats("a monolithic upload", none, func() error {
		_, err := r.PutBlob(ctx, "app", digest.FromBytes(mono), int64(len(mono)), bytes.NewReader(mono))
		return err
	})
	stats("a session finished at once", none, session([]byte("a prompt session"), 0))
	stats("a session finished 10 minutes after it began", none, session([]byte("a slower session"), 10*time.Minute))
	stats("a session finished half an hour after it began", none, session([]byte("a session older than half the grace period"), 30*time.Minute))
	once := func(n int64) bool { return n == 1 }
	stats("a mount (looks under a lease, then links)", once, func() error {
		ok, err := r.MountBlob(ctx, "other", "app", digest.FromBytes(mono))
		if err == nil && !ok {
			t.Error("the mount did not link the blob")
		}
		return err
	})
	for _, repo := range []string{"app", "other"} {
		if ok, err := r.HasBlob(ctx, repo, digest.FromBytes(mono)); err != nil || !ok {
			t.Errorf("blob not linked in %s: %v %v", repo, ok, err)
		}
	}
}

// collectedAfterStat is a store whose blob bytes a sweep deletes right
// after a caller found them (once).
type collectedAfterStat struct {
	content.Backend
	key  string
	done atomic.Bool
}

func (c *collectedAfterStat) Close() error { return contenttest.CloseWrapped(c.Backend) }

func (c *collectedAfterStat) Stat(ctx context.Context, key string) (int64, error) {
	n, err := c.Backend.Stat(ctx, key)
	if err == nil && key == c.key && c.done.CompareAndSwap(false, true) {
		if derr := c.Backend.Delete(ctx, key); derr != nil {
			return 0, derr
		}
	}
	return n, err
}

// TestALinkWithoutALeaseFindsBytesCollectedSinceItsCallerLooked: bytes
// a caller found in the store but did not write under a lease (a
// manifest's blob adopted, say) are asked about again inside the link's
// transaction; collected in between, the link is refused and nothing is
// linked.
func TestALinkWithoutALeaseFindsBytesCollectedSinceItsCallerLooked(t *testing.T) {
	ctx := t.Context()
	r := openOneNode(t)
	b := []byte("found, then collected before the link")
	d := digest.FromBytes(b)
	if _, err := r.store.Put(ctx, "seed", d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	r.store = content.New(&collectedAfterStat{Backend: r.store.Backend(), key: content.BlobKey(d)})
	if err := r.AdoptBlob(ctx, "app", d, nil); err == nil {
		t.Fatal("bytes collected between the caller's look and the link were linked")
	}
	if ok, err := r.HasBlob(ctx, "app", d); err != nil || ok {
		t.Fatalf("linked %v (%v) without its bytes", ok, err)
	}
}

// TestAReplicatedBlobLinkedUnderALeaseIsLookedForOnce: the follower
// leases a blob before fetching it (or finding it), so its link, in a
// region-wide transaction, does not look at the content store again (on
// S3 a HEAD under the region's lock); without a lease it looks again.
func TestAReplicatedBlobLinkedUnderALeaseIsLookedForOnce(t *testing.T) {
	ctx := t.Context()
	r := openOneNode(t)
	counter := &statCounter{Backend: r.store.Backend()}
	r.store = content.New(counter)
	for i, leased := range []bool{true, false} {
		b := []byte(fmt.Sprint("replicated blob ", i))
		d := digest.FromBytes(b)
		var lease *meta.BlobLease
		if leased {
			l, release := r.LeaseToLink(ctx, d)
			defer release()
			lease = l
		}
		if _, err := r.store.Put(ctx, fmt.Sprint("fetch-", i), d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		before := counter.n.Load()
		if err := r.ApplyBlob(ctx, "westeurope", int64(i+1), "app", d, r.Clock().Now(), -1, lease); err != nil {
			t.Fatal(err)
		}
		want := int64(2)
		if leased {
			want = 1
		}
		if n := counter.n.Load() - before; n != want {
			t.Errorf("leased %v: the store was looked at %d times, want %d", leased, n, want)
		}
		if ok, err := r.HasBlob(ctx, "app", d); err != nil || !ok {
			t.Errorf("leased %v: not linked: %v", leased, err)
		}
	}
}
