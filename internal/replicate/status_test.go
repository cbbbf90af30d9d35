package replicate

import (
	"testing"
	"time"

	"github.com/georeg/georeg/internal/feed"
)

// TestHowFarBehindIsTheOldestRecordFetchedAndNotApplied: a region is as
// far behind a peer as the oldest record it fetched from it and has not
// applied (or parked) yet; a page fetched again adds nothing twice; a
// follower that starts over forgets what its predecessor fetched.
func TestHowFarBehindIsTheOldestRecordFetchedAndNotApplied(t *testing.T) {
	tr := newTracker()
	t0 := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	recs := func(from, to int) []feed.Record {
		var out []feed.Record
		for i := from; i <= to; i++ {
			out = append(out, feed.Record{Seq: int64(i), Created: at(i)})
		}
		return out
	}
	oldest := func(want time.Time) {
		t.Helper()
		if got := tr.peers["westeurope"].OldestUnapplied; !got.Equal(want) {
			t.Fatalf("oldest unapplied %v, want %v", got, want)
		}
	}
	tr.fetched("westeurope", "http://w", 3, false, nil)
	oldest(time.Time{})
	tr.fetched("westeurope", "http://w", 3, false, recs(1, 3))
	tr.fetched("westeurope", "http://w", 5, false, recs(2, 5)) // 2 and 3 again: kept once
	oldest(at(1))
	tr.applied("westeurope", "http://w", 1, at(1), 0)
	oldest(at(2))
	tr.parked("westeurope", "http://w", 2)
	oldest(at(3))
	tr.applied("westeurope", "http://w", 4, at(4), 0) // 3 and 4: in order, 4 implies 3
	oldest(at(5))
	if n := len(tr.peers["westeurope"].pending); n != 1 {
		t.Fatalf("%d records pending, want 1", n)
	}
	tr.applied("westeurope", "http://w", 5, at(5), 0)
	oldest(time.Time{})

	tr.fetched("westeurope", "http://w", 7, false, recs(6, 7))
	tr.follow("westeurope", false) // this node stops following it
	oldest(time.Time{})
	tr.fetched("westeurope", "http://w", 7, false, recs(6, 7))
	tr.follow("westeurope", true) // a new follower starts from the cursor
	oldest(time.Time{})
	if n := len(tr.peers["westeurope"].pending); n != 0 {
		t.Fatalf("%d records pending after a restart, want 0", n)
	}
}

// TestAntiEntropyLeavesWhatTheFeedIsApplying: a repository with a record
// fetched and not applied yet is the feed's to repair; while the peer's
// feed has records not even fetched yet (a backlog), rounds are skipped,
// at most maxSkips in a row, so a feed that never drains does not stop
// anti-entropy.
func TestAntiEntropyLeavesWhatTheFeedIsApplying(t *testing.T) {
	tr := newTracker()
	tr.follow("eastus", true)
	rec := func(seq int64, repo string) feed.Record {
		return feed.Record{Seq: seq, Repo: repo, Created: time.Now()}
	}
	if busy, backlog := tr.applying("eastus"); len(busy) != 0 || backlog {
		t.Fatalf("a peer not heard from yet: busy %v, backlog %v", busy, backlog)
	}
	tr.fetched("eastus", "http://e", 2, false, []feed.Record{rec(1, "app/a"), rec(2, "app/b")})
	busy, backlog := tr.applying("eastus")
	if !busy["app/a"] || !busy["app/b"] || len(busy) != 2 || backlog {
		t.Fatalf("two records fetched, none applied: busy %v, backlog %v", busy, backlog)
	}
	tr.applied("eastus", "http://e", 1, time.Now(), 0)
	if busy, _ := tr.applying("eastus"); busy["app/a"] || !busy["app/b"] {
		t.Fatalf("app/a applied: busy %v", busy)
	}
	tr.fetched("eastus", "http://e", 500, false, []feed.Record{rec(3, "app/c")}) // 497 not fetched yet
	for i := range maxSkips {
		if _, backlog := tr.applying("eastus"); !backlog {
			t.Fatalf("round %d with a backlog was not skipped", i+1)
		}
	}
	if _, backlog := tr.applying("eastus"); backlog {
		t.Fatalf("round %d with a backlog was skipped: anti-entropy would starve", maxSkips+1)
	}
	if _, backlog := tr.applying("eastus"); !backlog {
		t.Fatal("the round after a forced one was not skipped")
	}
	tr.follow("eastus", false)
	if busy, backlog := tr.applying("eastus"); len(busy) != 0 || backlog {
		t.Fatalf("a peer this node does not follow: busy %v, backlog %v", busy, backlog)
	}
}
