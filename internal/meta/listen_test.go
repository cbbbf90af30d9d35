package meta_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/storetest"
)

// heard records the repositories a node was told changed.
type heard struct {
	mu    sync.Mutex
	repos map[string]int
}

func (h *heard) changed(repo string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.repos[repo]++
}

func (h *heard) count(repo string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.repos[repo]
}

// TestSyncReturnsOnlyAfterEveryEarlierChangeIsHeard (invariant 5 across
// the nodes of a region): node B listens; node A changes a tag, then B's
// Sync returns, and B's Changed listener has run for that repository by
// then, every time, though notifications arrive after the write commits.
// This is what lets a node serve tags and manifests from its cache with
// no read of the store, yet never serve one another node changed before
// the read began. Before B listens, and after it stops, Sync fails
// (ErrNotListening), so no cache is trusted then.
func TestSyncReturnsOnlyAfterEveryEarlierChangeIsHeard(t *testing.T) {
	dsn := storetest.Postgres(t)
	open := func() *meta.DB {
		db, err := meta.OpenPostgres(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(), open()
	if err := b.Sync(t.Context()); !errors.Is(err, meta.ErrNotListening) {
		t.Fatalf("Sync before listening: %v, want ErrNotListening", err)
	}
	h := &heard{repos: map[string]int{}}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- b.Listen(ctx, meta.Listeners{Feed: func() {}, Changed: h.changed, Failed: func(err error) { t.Log("listen:", err) }})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for b.Sync(t.Context()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("node B not listening after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 100 {
		repo := fmt.Sprintf("app%d", i)
		err := a.Update(t.Context(), func(tx *meta.Tx) error {
			_, err := tx.SetTag(t.Context(), repo, "latest", digest.FromString(repo), hlc.Version{Time: int64(i + 1), Region: "eastus"}, time.Now())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		if h.count(repo) == 0 {
			t.Fatalf("round %d: Sync returned before node B heard of node A's change of %s", i, repo)
		}
	}
	// Concurrent Syncs share markers and all return.
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if err := b.Sync(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(t.Context()); !errors.Is(err, meta.ErrNotListening) {
		t.Fatalf("Sync after listening stopped: %v, want ErrNotListening", err)
	}
}
