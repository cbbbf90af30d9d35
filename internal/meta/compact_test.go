package meta_test

import (
	"testing"
	"time"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// TestCompactingTheFeedKeepsItsNewestRecordAndItsByteTotals: on both
// dialects, compaction deletes the oldest records in batches up to the
// floor asked for, never the newest (whose running total the feed's byte
// counts read), never below the floor already reached, and the byte
// counts of the feed stay what they were.
func TestCompactingTheFeedKeepsItsNewestRecordAndItsByteTotals(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		for i := range 10 {
			if err := db.UpdateRepo(ctx, "app", func(tx *meta.Tx) error {
				return tx.AppendFeed(ctx, meta.Record{Kind: meta.KindBlob, Repo: "app", Size: 100, Version: hlc.Version{Time: int64(i + 1), Region: "eastus"}, Created: time.Now()})
			}); err != nil {
				t.Fatal(err)
			}
		}
		compact := func(through int64, limit int) (int64, int64) {
			t.Helper()
			var n, floor int64
			if err := db.Update(ctx, func(tx *meta.Tx) error {
				var err error
				n, floor, err = tx.CompactFeed(ctx, through, limit)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return n, floor
		}
		if n, floor := compact(4, 3); n != 3 || floor != 3 {
			t.Fatalf("through 4, 3 at most: deleted %d, floor %d; want 3, 3", n, floor)
		}
		if n, floor := compact(2, 100); n != 0 || floor != 3 {
			t.Fatalf("below the floor: deleted %d, floor %d; want 0, 3", n, floor)
		}
		if n, floor := compact(100, 100); n != 6 || floor != 9 {
			t.Fatalf("past the head: deleted %d, floor %d; want 6 (all but the newest), 9", n, floor)
		}
		if f, err := db.FeedFloor(ctx); err != nil || f != 9 {
			t.Fatalf("FeedFloor %d (%v), want 9", f, err)
		}
		if total, _, err := db.FeedBytes(ctx, 0); err != nil || total != 1000 {
			t.Fatalf("the feed's bytes after compaction: %d (%v), want 1000", total, err)
		}
		// A follower at the floor (the record there is gone) has 100
		// bytes left, not the whole feed's.
		if total, after, err := db.FeedBytes(ctx, 9); err != nil || total != 1000 || after != 100 {
			t.Fatalf("bytes after the floor: %d of %d (%v), want 100 of 1000", after, total, err)
		}
		recs, err := db.Feed(ctx, 9, 10)
		if err != nil || len(recs) != 1 || recs[0].Seq != 10 {
			t.Fatalf("records after the floor: %+v %v", recs, err)
		}
	})
}
