package meta_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/storetest"
)

// dialects opens a fresh store of each dialect: the suite runs on both.
var dialects = []struct {
	name string
	open func(t *testing.T) *meta.DB
}{
	{"sqlite", func(t *testing.T) *meta.DB {
		db, err := meta.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "meta.db"))
		if err != nil {
			t.Fatal(err)
		}
		return db
	}},
	{"postgres", func(t *testing.T) *meta.DB { return openPostgres(t, storetest.Postgres(t)) }},
}

// openPostgres opens a handle on the PostgreSQL database at dsn (another
// node of the region, when dsn is shared), closed when t ends.
func openPostgres(t *testing.T, dsn string) *meta.DB {
	t.Helper()
	db, err := meta.OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// eachDialect runs fn once per dialect, on a fresh store.
func eachDialect(t *testing.T, fn func(t *testing.T, db *meta.DB)) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t)
			t.Cleanup(func() { db.Close() })
			fn(t, db)
		})
	}
}

// TestTagsAreLastWriterWins checks the SQL that invariant 4 rests on: a
// tag write or delete wins only with a later version, ties broken by
// region name, and a tombstone is never undone by an older write.
func TestTagsAreLastWriterWins(t *testing.T) { eachDialect(t, testTagsAreLastWriterWins) }

func testTagsAreLastWriterWins(t *testing.T, db *meta.DB) {
	ctx := t.Context()
	a, b := digest.FromString("a"), digest.FromString("b")
	now := time.Now()
	steps := []struct {
		name    string
		del     bool
		d       digest.Digest
		v       hlc.Version
		wantWon bool
		want    digest.Digest // "" = tombstone
	}{
		{"the first write wins", false, a, hlc.Version{Time: 10, Region: "eastus"}, true, a},
		{"an older write loses", false, b, hlc.Version{Time: 9, Region: "westeurope"}, false, a},
		{"an equal time from a later region name wins", false, b, hlc.Version{Time: 10, Region: "westeurope"}, true, b},
		{"an equal time from an earlier region name loses", false, a, hlc.Version{Time: 10, Region: "eastus"}, false, b},
		{"a later delete wins", true, "", hlc.Version{Time: 20, Region: "eastus"}, true, ""},
		{"an older write does not resurrect the tombstone", false, a, hlc.Version{Time: 15, Region: "southeastasia"}, false, ""},
		{"a later write revives the tag", false, a, hlc.Version{Time: 30, Region: "eastus"}, true, a},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var won bool
			err := db.Update(ctx, func(tx *meta.Tx) error {
				var err error
				if s.del {
					won, err = tx.DeleteTag(ctx, "app", "latest", s.v, now)
				} else {
					won, err = tx.SetTag(ctx, "app", "latest", s.d, s.v, now)
				}
				return err
			})
			if err != nil || won != s.wantWon {
				t.Fatalf("won=%v err=%v, want won=%v", won, err, s.wantWon)
			}
			rec, err := db.TagRecord(ctx, "app", "latest")
			if err != nil {
				t.Fatal(err)
			}
			if rec.Deleted != (s.want == "") || rec.Digest != s.want {
				t.Fatalf("tag is %+v, want digest %q", rec, s.want)
			}
		})
	}
}

// TestManifestTombstoneIsNotUndoneByAnOlderPut checks manifests keep the
// same rule: a delete at v20 is not undone by a put at v15.
func TestManifestTombstoneIsNotUndoneByAnOlderPut(t *testing.T) {
	eachDialect(t, testManifestTombstoneIsNotUndoneByAnOlderPut)
}

func testManifestTombstoneIsNotUndoneByAnOlderPut(t *testing.T, db *meta.DB) {
	ctx := t.Context()
	m := &meta.Manifest{Repo: "app", Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.manifest.v1+json",
		Size: 1, Payload: []byte("m"), Created: time.Now(), Version: hlc.Version{Time: 10, Region: "eastus"}}
	put := func(v hlc.Version) bool {
		m.Version = v
		var changed bool
		if err := db.Update(ctx, func(tx *meta.Tx) error {
			var err error
			changed, err = tx.PutManifest(ctx, m)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return changed
	}
	put(hlc.Version{Time: 10, Region: "eastus"})
	if err := db.Update(ctx, func(tx *meta.Tx) error {
		_, err := tx.DeleteManifest(ctx, "app", m.Digest, hlc.Version{Time: 20, Region: "eastus"}, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if put(hlc.Version{Time: 15, Region: "westeurope"}) {
		t.Fatal("an older put undid the delete")
	}
	if _, err := db.GetManifest(ctx, "app", m.Digest); err != meta.ErrNotFound {
		t.Fatalf("manifest visible after delete: %v", err)
	}
	if !put(hlc.Version{Time: 25, Region: "westeurope"}) {
		t.Fatal("a later put did not bring the manifest back")
	}
}

// TestTheFeedStaysOrderedWithoutGapsWithWritersOnSeveralNodes: writers on
// two handles of one store (two nodes of a region) append at once while a
// reader on a third follows the feed as a peer does (since its last seq):
// it sees every record exactly once, seq 1, 2, 3... with no gap, though
// the writers' transactions interleave: writes of different repositories
// run at once (meta's write scopes) and each numbers its records at its
// end under the feed sequencer. A feed numbered by a sequence, or outside
// the sequencer, would commit out of order and the reader would step past
// records that commit later.
func TestTheFeedStaysOrderedWithoutGapsWithWritersOnSeveralNodes(t *testing.T) {
	for _, d := range []struct {
		name string
		open func(t *testing.T) func() *meta.DB
	}{
		{"sqlite", func(t *testing.T) func() *meta.DB {
			path := filepath.Join(t.TempDir(), "meta.db")
			return func() *meta.DB {
				db, err := meta.OpenSQLite(t.Context(), path)
				if err != nil {
					t.Fatal(err)
				}
				return db
			}
		}},
		{"postgres", func(t *testing.T) func() *meta.DB {
			dsn := storetest.Postgres(t)
			return func() *meta.DB { return openPostgres(t, dsn) }
		}},
	} {
		t.Run(d.name, func(t *testing.T) {
			open := d.open(t)
			nodes := []*meta.DB{open(), open()}
			reader := open()
			defer func() {
				for _, db := range append(nodes, reader) {
					db.Close()
				}
			}()
			const writers, each = 8, 40
			ctx := t.Context()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					db := nodes[w%len(nodes)]
					for i := range each {
						// Writes of three repositories, which run at
						// once on the two nodes, and one in five
						// region-wide, which runs alone.
						repo := fmt.Sprintf("app%d", (w+i)%3)
						write := func(tx *meta.Tx) error {
							v := hlc.Version{Time: int64(i + 1), Region: "eastus"}
							tag := fmt.Sprintf("w%d-%d", w, i)
							if _, err := tx.SetTag(ctx, repo, tag, digest.FromString(tag), v, time.Now()); err != nil {
								return err
							}
							return tx.AppendFeed(ctx, meta.Record{Kind: meta.KindTag, Repo: repo, Tag: tag, Version: v, Created: time.Now()})
						}
						var err error
						if i%5 == 4 {
							err = db.Update(ctx, write)
						} else {
							err = db.UpdateRepo(ctx, repo, write)
						}
						if err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			var seen []int64
			since := int64(0)
			deadline := time.Now().Add(60 * time.Second)
			for finished := false; !finished || since < writers*each; {
				select {
				case <-done:
					finished = true
					if t.Failed() {
						t.FailNow() // a writer failed: its records will not come
					}
				default:
				}
				recs, err := reader.Feed(ctx, since, 7)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					seen = append(seen, r.Seq)
					since = r.Seq
				}
				if time.Now().After(deadline) {
					t.Fatalf("the reader saw %d of %d records in 60 s", len(seen), writers*each)
				}
			}
			if len(seen) != writers*each {
				t.Fatalf("the reader saw %d records, want %d", len(seen), writers*each)
			}
			for i, seq := range seen {
				if seq != int64(i+1) {
					t.Fatalf("record %d has seq %d: the feed has a gap, a duplicate or a record out of order", i+1, seq)
				}
			}
		})
	}
}

// TestSQLiteCommitsAreSyncedBeforeTheyReturn: invariant 8's crash test
// (region.TestInvariant8...) takes SQLite's committed state as what
// survives a power cut; that holds only with the write-ahead log synced
// at every commit (journal_mode=WAL, synchronous=FULL).
func TestSQLiteCommitsAreSyncedBeforeTheyReturn(t *testing.T) {
	db, err := meta.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for name, want := range map[string]string{"journal_mode": "wal", "synchronous": "2"} {
		if got, err := meta.WriterPragma(t.Context(), db, name); err != nil || got != want {
			t.Errorf("PRAGMA %s = %q (%v), want %q", name, got, err, want)
		}
	}
}
