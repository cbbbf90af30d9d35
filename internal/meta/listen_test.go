package meta_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/storetest"
)

// heard records the repositories a node was told changed; while hang is
// set, its listener stops in Changed (a hung node).
type heard struct {
	mu    sync.Mutex
	repos map[string]int
	hang  chan struct{}
}

func (h *heard) changed(repo string) {
	h.mu.Lock()
	hang := h.hang
	h.repos[repo]++
	h.mu.Unlock()
	if hang != nil && repo != "" {
		<-hang
	}
}

func (h *heard) count(repo string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.repos[repo]
}

// TestAWriteIsHeardByEveryNodeBeforeItReturnsOrTheirLeasesRunOut
// (invariant 5 across the nodes of a region): nodes serve tags and
// manifests from their caches with no query per read, so a write must not
// return before every other node has forgotten what it changed, or before
// a node that cannot hear has stopped trusting its cache.
//
// Node A moves a tag 100 times; each time, when A's Update returns, node
// B's listener has already run for the tag's repository. (A new tag is
// in no cache: it is not notified.) Then B hangs in its listener: A's next write still returns,
// within a bound, and by then B no longer holds its lease (Fresh is
// false), so B reads the store. When B recovers it holds a lease again;
// when it stops listening, it holds none.
func TestAWriteIsHeardByEveryNodeBeforeItReturnsOrTheirLeasesRunOut(t *testing.T) {
	dsn := storetest.Postgres(t)
	a, b := openPostgres(t, dsn), openPostgres(t, dsn)
	if b.Fresh() {
		t.Fatal("a node that does not listen trusts its cache")
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	listen := func(db *meta.DB, h *heard) chan error {
		done := make(chan error, 1)
		go func() {
			done <- db.Listen(ctx, meta.Listeners{Feed: func() {}, Changed: h.changed, Failed: func(err error) { t.Log("listen:", err) }})
		}()
		return done
	}
	hb := &heard{repos: map[string]int{}}
	listen(a, &heard{repos: map[string]int{}})
	bDone := listen(b, hb)
	waitFor(t, "both nodes to hold a lease", func() bool { return a.Fresh() && b.Fresh() })
	waitFor(t, "node A to know node B", func() bool { return meta.KnownNodes(a) == 1 })

	write := func(i int) time.Duration {
		t0 := time.Now()
		err := a.Update(t.Context(), func(tx *meta.Tx) error {
			_, err := tx.SetTag(t.Context(), "app", "latest", digest.FromString(fmt.Sprint(i)), hlc.Version{Time: int64(i + 1), Region: "eastus"}, time.Now())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return time.Since(t0)
	}
	write(0)
	var took []time.Duration
	for i := 1; i <= 100; i++ {
		before := hb.count("app")
		took = append(took, write(i))
		if hb.count("app") == before {
			t.Fatalf("round %d: node A's move of app:latest returned before node B heard of it", i)
		}
	}
	slices.Sort(took)
	t.Logf("a move of a tag with another node listening: median %s, slowest %s", took[50], took[99])

	// B hangs: A's write returns within the lease's bound, and B has
	// stopped trusting its cache by then.
	hang := make(chan struct{})
	hb.mu.Lock()
	hb.hang = hang
	hb.mu.Unlock()
	if d := write(101); d > 2*time.Second {
		t.Fatalf("a write waited %s for a hung node", d)
	}
	if b.Fresh() {
		t.Fatal("node B trusts its cache after node A's write returned, though B has not heard the write")
	}
	hb.mu.Lock()
	hb.hang = nil
	hb.mu.Unlock()
	close(hang)
	waitFor(t, "node B to hold a lease again", b.Fresh)

	stop()
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	if b.Fresh() {
		t.Fatal("node B trusts its cache after it stopped listening")
	}
}
