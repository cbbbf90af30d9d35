package meta_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/storetest"
)

// TestAPeersByteCountsAreLookupsNotScans: status reads each peer's feed
// byte counts (done and left) every few seconds; they come from the
// running total each record carries, so they cost two lookups whatever
// the feed's length, and equal the sums over the records (a write rolled
// back leaves no trace in them).
func TestAPeersByteCountsAreLookupsNotScans(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		kinds := []string{meta.KindBlob, meta.KindManifest, meta.KindBlob, meta.KindTag, meta.KindBlob, meta.KindAck}
		var sizes []int64
		var kindOf []string
		for i := range 30 {
			kind, size := kinds[i%len(kinds)], int64(1000+i*37)
			err := db.UpdateRepo(ctx, "app", func(tx *meta.Tx) error {
				return tx.AppendFeed(ctx, meta.Record{Kind: kind, Repo: "app", Size: size, Version: hlc.Version{Time: int64(i + 1), Region: "eastus"}, Created: time.Now()})
			})
			if err != nil {
				t.Fatal(err)
			}
			sizes, kindOf = append(sizes, size), append(kindOf, kind)
			if i%7 == 3 { // a blob record whose write fails: rolled back
				err := db.UpdateRepo(ctx, "app", func(tx *meta.Tx) error {
					if err := tx.AppendFeed(ctx, meta.Record{Kind: meta.KindBlob, Repo: "app", Size: 1 << 30, Version: hlc.Version{Time: 99, Region: "eastus"}, Created: time.Now()}); err != nil {
						return err
					}
					return errors.New("refused")
				})
				if err == nil {
					t.Fatal("the refused write committed")
				}
			}
		}
		check := func(when string) {
			t.Helper()
			for since := int64(0); since <= int64(len(sizes))+1; since++ {
				var total, after int64
				for i, s := range sizes {
					if kindOf[i] == meta.KindBlob {
						total += s
						if int64(i+1) > since {
							after += s
						}
					}
				}
				gotTotal, gotAfter, err := db.FeedBytes(ctx, since)
				if err != nil || gotTotal != total || gotAfter != after {
					t.Fatalf("%s, since %d: %d total, %d after (%v); want %d, %d", when, since, gotTotal, gotAfter, err, total, after)
				}
			}
		}
		check("appended")
		// The counts are the running totals the records carry: summing
		// the records' sizes (a scan) would now give other figures.
		if err := meta.Exec(db, `UPDATE feed SET size = 0`); err != nil {
			t.Fatal(err)
		}
		check("with the records' sizes zeroed")
		if db.Shared() {
			return
		}
		for _, q := range meta.FeedBytesQueries {
			plan, err := meta.QueryPlan(db, q, 5)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(plan, "SCAN feed\n") || strings.Contains(plan, "TEMP B-TREE") {
				t.Fatalf("%s reads the whole feed:\n%s", q, plan)
			}
		}
	})
}

// TestAFeedFromBeforeRunningTotalsGetsThem: a store made before feed
// records carried running totals gets them from its migration.
func TestAFeedFromBeforeRunningTotalsGetsThem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	for _, d := range []struct {
		name string
		open func() *meta.DB
	}{
		{"sqlite", func() *meta.DB {
			db, err := meta.OpenSQLite(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			return db
		}},
		{"postgres", func() func() *meta.DB {
			dsn := storetest.Postgres(t)
			return func() *meta.DB { return openPostgres(t, dsn) }
		}()},
	} {
		t.Run(d.name, func(t *testing.T) {
			ctx := t.Context()
			db := d.open()
			for i := range 5 {
				kind := []string{meta.KindBlob, meta.KindTag}[i%2]
				if err := db.UpdateRepo(ctx, "app", func(tx *meta.Tx) error {
					return tx.AppendFeed(ctx, meta.Record{Kind: kind, Repo: "app", Size: int64(100 * (i + 1)), Version: hlc.Version{Time: int64(i + 1), Region: "eastus"}, Created: time.Now()})
				}); err != nil {
					t.Fatal(err)
				}
			}
			// As the store was before the migration: no running totals,
			// and the migration (and those after it, which run again)
			// not run.
			n := meta.MigrationNamed("ADD COLUMN blob_bytes")
			if n < 0 {
				t.Fatal("no migration adds blob_bytes")
			}
			if err := meta.Exec(db, `ALTER TABLE feed DROP COLUMN blob_bytes`); err != nil {
				t.Fatal(err)
			}
			// A later migration adds a column too: as before it.
			if err := meta.Exec(db, `ALTER TABLE presence DROP COLUMN seq`); err != nil {
				t.Fatal(err)
			}
			if err := meta.Exec(db, `UPDATE region_state SET value = $1 WHERE name = 'schema'`, n); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db = d.open()
			defer db.Close()
			total, after, err := db.FeedBytes(ctx, 1)
			if err != nil || total != 100+300+500 || after != 300+500 {
				t.Fatalf("after the migration: %d total, %d after record 1 (%v); want 900, 800", total, after, err)
			}
		})
	}
}
