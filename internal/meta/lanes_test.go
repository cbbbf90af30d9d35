package meta_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/storetest"
)

// twoLanes gives db two lanes and returns two repository names whose
// writes wait in different ones.
func twoLanes(t *testing.T, db *meta.DB) (x, y string) {
	t.Helper()
	db.SetWriteLanes(2)
	x = "lane/x"
	for i := range 100 {
		y = fmt.Sprint("lane/y", i)
		if meta.LaneOf(db, y) != meta.LaneOf(db, x) {
			return x, y
		}
	}
	t.Fatal("no repository in another lane than lane/x: the node runs one batch at a time")
	return "", ""
}

// moveTag moves repo:latest to a digest of i at version i.
func moveTag(db *meta.DB, repo string, i int64) error {
	return db.UpdateRepo(context.Background(), repo, func(tx *meta.Tx) error {
		_, err := tx.SetTag(context.Background(), repo, "latest", digest.FromString(fmt.Sprint(repo, i)), hlc.Version{Time: i, Region: "eastus"}, time.Now())
		return err
	})
}

// TestLanesFollowTheRoundTripToPostgreSQL: one lane when PostgreSQL is on
// the same host, one more per 0.2 ms of round trip, at most eight.
func TestLanesFollowTheRoundTripToPostgreSQL(t *testing.T) {
	for _, tc := range []struct {
		rtt  time.Duration
		want int
	}{
		{0, 1}, {140 * time.Microsecond, 1}, {199 * time.Microsecond, 1}, {200 * time.Microsecond, 2},
		{450 * time.Microsecond, 3}, {2300 * time.Microsecond, 8}, {time.Second, 8},
	} {
		if got := meta.LanesFor(tc.rtt); got != tc.want {
			t.Errorf("round trip %s: %d lanes, want %d", tc.rtt, got, tc.want)
		}
	}
}

// TestANodeSharesItsChosenLanesWithTheNodesItHears: lanes a node chose by
// its round trip are the region's: with n nodes each runs its share, at
// least one.
func TestANodeSharesItsChosenLanesWithTheNodesItHears(t *testing.T) {
	for _, tc := range []struct{ lanes, nodes, want int }{
		{1, 1, 1}, {8, 1, 8}, {8, 2, 4}, {8, 3, 2}, {8, 9, 1}, {3, 2, 1}, {8, 0, 8},
	} {
		if got := meta.LanesNow(tc.lanes, tc.nodes); got != tc.want {
			t.Errorf("%d lanes, %d nodes: %d, want %d", tc.lanes, tc.nodes, got, tc.want)
		}
	}
}

// TestANodeWritesTwoRepositoriesAtOnce: on PostgreSQL a node runs a
// batch of each of its lanes at once, so a write of a repository does not
// wait for a write of another repository still inside its transaction (it
// waited in one queue before, whatever the repositories).
func TestANodeWritesTwoRepositoriesAtOnce(t *testing.T) {
	db := openPostgres(t, storetest.Postgres(t))
	x, y := twoLanes(t, db)
	inside, release, held := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		held <- db.UpdateRepo(t.Context(), x, func(tx *meta.Tx) error {
			close(inside)
			<-release
			_, err := tx.SetTag(t.Context(), x, "latest", digest.FromString("x"), hlc.Version{Time: 1, Region: "eastus"}, time.Now())
			return err
		})
	}()
	<-inside
	other := make(chan error, 1)
	go func() { other <- moveTag(db, y, 1) }()
	select {
	case err := <-other:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // a bound, not a timing: x's write holds until released
		close(release)
		t.Fatalf("a write of %s waited for a write of %s, in another lane, to end", y, x)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// TestANodesChangesAreAcknowledgedInTheOrderTheyCommit (invariant 5
// across the nodes of a region, with lanes): node A's move of x:latest
// reaches the feed sequencer only after its move of y:latest, in the
// other lane, committed and node B acknowledged it. B then hangs before
// it has forgotten x. A's move of x must not return while B still trusts
// its cache: B's acknowledgement of y's move covers only what committed
// before it. (With a change numbered before its
// batch took the sequencer, x's move carried the smaller number, B's
// acknowledgement of y's covered it, and it returned at once with B
// serving x:latest from its cache.)
func TestANodesChangesAreAcknowledgedInTheOrderTheyCommit(t *testing.T) {
	dsn := storetest.Postgres(t)
	a, b := openPostgres(t, dsn), openPostgres(t, dsn)
	x, y := twoLanes(t, a)
	for _, repo := range []string{x, y} { // a new tag is in no cache and not notified: set each once
		if err := moveTag(a, repo, 1); err != nil {
			t.Fatal(err)
		}
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var mu sync.Mutex
	var hang chan struct{}
	forgotX := false
	changedB := func(repo string) {
		if repo != x {
			return
		}
		mu.Lock()
		h := hang
		mu.Unlock()
		if h != nil {
			<-h
		}
		mu.Lock()
		forgotX = true
		mu.Unlock()
	}
	var listening sync.WaitGroup
	for _, n := range []struct {
		db      *meta.DB
		changed func(string)
	}{{a, func(string) {}}, {b, changedB}} {
		listening.Go(func() {
			_ = n.db.Listen(ctx, meta.Listeners{Feed: func() {}, Changed: n.changed, Failed: func(err error) { t.Log("listen:", err) }})
		})
	}
	defer listening.Wait()
	defer stop()
	waitFor(t, "both nodes to hold a lease", func() bool { return a.Fresh() && b.Fresh() })
	waitFor(t, "node A to know node B", func() bool { return meta.KnownNodes(a) == 1 })

	atSequencer, release := meta.HoldBeforeSequence(a, x)
	mu.Lock()
	hang, forgotX = make(chan struct{}), false
	mu.Unlock()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if hang != nil {
			close(hang)
			hang = nil
		}
	}()
	moved := make(chan error, 1)
	go func() { moved <- moveTag(a, x, 2) }()
	<-atSequencer
	if err := moveTag(a, y, 2); err != nil { // committed, heard and acknowledged by B
		t.Fatal(err)
	}
	release()
	if err := <-moved; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	forgot := forgotX
	mu.Unlock()
	if b.Fresh() && !forgot {
		t.Fatal("node A's move of x:latest returned while node B trusted its cache and had not forgotten x: its acknowledgement of the move of y, committed before, was taken for the move of x")
	}
}
