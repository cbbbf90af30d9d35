package meta_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// TestTheSummaryTreeCostsWhatChanged: anti-entropy's summary tree is kept
// at the cost of what changed (a tag moved: that repository scanned
// again, its bucket alone changed), not of the registry; two stores that
// hold the same agree on its root; a change behind georeg's back (a row
// deleted by hand) is found by the rolling verification within a bounded
// number of refreshes.
func TestTheSummaryTreeCostsWhatChanged(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		v := hlc.Version{Time: 1 << 40, Region: "eastus"}
		const repos, tags = 300, 20 // 6,000 rows: the verification's share, 1,000 a refresh
		fill := func(db *meta.DB) {
			for r := range repos {
				repo := fmt.Sprintf("app/r%03d", r)
				if err := db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
					for i := range tags {
						if _, err := tx.SetTag(ctx, repo, fmt.Sprint("t", i), digest.FromString(repo), v, time.Now()); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
		fill(db)
		first, err := db.SummaryTree(ctx)
		if err != nil {
			t.Fatal(err)
		}
		scans, _ := db.SummaryScans()
		if scans != repos {
			t.Fatalf("the first tree scanned %d repositories, want every one (%d)", scans, repos)
		}

		// A second store with the same content agrees.
		other := dialects[0].open(t)
		if db.Shared() {
			other = dialects[1].open(t)
		}
		fill(other)
		if o, err := other.SummaryTree(ctx); err != nil || o.Root != first.Root {
			t.Fatalf("two stores with the same tags: roots %s and %s (%v)", first.Root, o.Root, err)
		}

		// Nothing changed: the rolling verification's rows only.
		again, err := db.SummaryTree(ctx)
		if err != nil || again.Root != first.Root {
			t.Fatalf("an unchanged store changed its root (%v)", err)
		}
		after, _ := db.SummaryScans()
		if n := after - scans; n > 1000/tags {
			t.Fatalf("an unchanged store scanned %d repositories, want at most %d (the verification's 1,000 rows)", n, 1000/tags)
		}

		// One tag moved: its bucket alone changes.
		moved := "app/r123"
		if err := db.UpdateRepo(ctx, moved, func(tx *meta.Tx) error {
			_, err := tx.SetTag(ctx, moved, "t7", digest.FromString("moved"), hlc.Version{Time: 2 << 40, Region: "eastus"}, time.Now())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		changed, err := db.SummaryTree(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for b := range meta.NumBuckets {
			if (changed.Buckets[b] != first.Buckets[b]) != (b == meta.BucketOf(moved)) {
				t.Fatalf("bucket %d changed %v; the moved repository is in bucket %d", b, changed.Buckets[b] != first.Buckets[b], meta.BucketOf(moved))
			}
		}
		if changed.Root == first.Root {
			t.Fatal("the root did not change")
		}
		theirs, err := other.BucketSummaries(ctx, meta.BucketOf(moved))
		if err != nil {
			t.Fatal(err)
		}
		ours, err := db.BucketSummaries(ctx, meta.BucketOf(moved))
		if err != nil {
			t.Fatal(err)
		}
		var differ []string
		for repo, h := range ours {
			if theirs[repo] != h {
				differ = append(differ, repo)
			}
		}
		if len(differ) != 1 || differ[0] != moved {
			t.Fatalf("repositories that differ in the moved one's bucket: %v, want [%s]", differ, moved)
		}

		// Behind georeg's back: found within a whole verification pass.
		if err := meta.Exec(db, `DELETE FROM tags WHERE repo = 'app/r200' AND name = 't3'`); err != nil {
			t.Fatal(err)
		}
		found := false
		for range repos*tags/1000 + 2 {
			tr, err := db.SummaryTree(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Buckets[meta.BucketOf("app/r200")] != changed.Buckets[meta.BucketOf("app/r200")] {
				found = true
				break
			}
		}
		if _, drifted := db.SummaryScans(); !found || drifted != 1 {
			t.Fatalf("a tag deleted by hand: found %v, %d summaries seen drifting, want found and 1", found, drifted)
		}
	})
}
