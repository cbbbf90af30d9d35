package meta_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/storetest"
)

// TestWritesThatShareATransactionRunAsIfOneAfterTheOther: writes waiting
// for their turn run in one transaction (group commit). A first write
// holds its batch open while three more queue: the second sets a tag,
// the third appends a feed record and then fails, the fourth reads the
// second's tag and appends a record. The three run in one batch, in
// order: the third alone is undone and gets its own error, the fourth
// sees the second's tag, the feed holds 1, 2 with no record of the
// third's, and (PostgreSQL) the batch's commit still notifies the feed's
// listeners though the write that first notified was undone.
func TestWritesThatShareATransactionRunAsIfOneAfterTheOther(t *testing.T) {
	dsn := storetest.Postgres(t)
	db, other := openPostgres(t, dsn), openPostgres(t, dsn)
	var feedWakes atomic.Int64
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go other.Listen(ctx, meta.Listeners{Feed: func() { feedWakes.Add(1) }, Changed: func(string) {}, Failed: func(error) {}})
	waitFor(t, "the listener", other.Fresh)

	wakes := feedWakes.Load()
	queued := []queuedWrite{
		{fn: setSharedTag},
		refusedAfterWriting,
		{fn: sharedTagThen("last", 4)},
	}
	runQueued(t, db, queued)
	feedHolds(t, db, "first", "last")
	waitFor(t, "feed listeners to wake for both commits", func() bool { return feedWakes.Load() >= wakes+2 })
}

// TestSQLiteWritesShareATransaction: the same on SQLite, whose one
// writer connection waited for a WAL fsync per write, plus a write whose
// caller goes away while it runs: it runs to its end under the batch's
// own bound and is committed with the others (a statement interrupted in
// the transaction would roll back every write of the batch).
func TestSQLiteWritesShareATransaction(t *testing.T) {
	db, err := meta.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	leaving, leave := context.WithCancel(t.Context())
	defer leave()
	queued := []queuedWrite{
		{fn: setSharedTag},
		refusedAfterWriting,
		{ctx: leaving, fn: func(ctx context.Context, tx *meta.Tx) error {
			leave() // its caller goes away while it runs
			return tx.AppendFeed(ctx, tagRecord("caller gone", 4))
		}},
		{fn: sharedTagThen("last", 5)},
	}
	runQueued(t, db, queued)
	feedHolds(t, db, "first", "caller gone", "last")
}

// queuedWrite is a write that queues behind a first one, with its
// expected error ("": none, "*": any); ctx, when set, is its caller's
// context.
type queuedWrite struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *meta.Tx) error
	want string
}

// refusedAfterWriting appends a feed record ("undone") and then fails:
// what it wrote must be undone, alone.
var refusedAfterWriting = queuedWrite{fn: func(ctx context.Context, tx *meta.Tx) error {
	if err := tx.AppendFeed(ctx, tagRecord("undone", 3)); err != nil {
		return err
	}
	return errors.New("refused after writing")
}, want: "refused after writing"}

func tagRecord(tag string, n int64) meta.Record {
	return meta.Record{Kind: meta.KindTag, Repo: "app", Tag: tag, Version: hlc.Version{Time: n, Region: "eastus"}, Created: time.Now()}
}

func setSharedTag(ctx context.Context, tx *meta.Tx) error {
	_, err := tx.SetTag(ctx, "app", "shared", digest.FromString("x"), hlc.Version{Time: 2, Region: "eastus"}, time.Now())
	return err
}

// sharedTagThen reads the tag setSharedTag set earlier in the batch, then
// appends a record of tag.
func sharedTagThen(tag string, n int64) func(ctx context.Context, tx *meta.Tx) error {
	return func(ctx context.Context, tx *meta.Tx) error {
		if _, err := tx.TagRecord(ctx, "app", "shared"); err != nil {
			return errors.New("the tag an earlier write of the batch set is not seen")
		}
		return tx.AppendFeed(ctx, tagRecord(tag, n))
	}
}

// runQueued has a first write (a feed record "first") hold its batch open
// until every write of queued waits behind it, then lets them all run and
// checks each one's result.
func runQueued(t *testing.T, db *meta.DB, queued []queuedWrite) {
	t.Helper()
	release := make(chan struct{})
	results := make([]chan error, len(queued)+1)
	for i := range results {
		results[i] = make(chan error, 1)
	}
	go func() {
		results[0] <- db.Update(t.Context(), func(tx *meta.Tx) error {
			<-release
			return tx.AppendFeed(t.Context(), tagRecord("first", 1))
		})
	}()
	waitFor(t, "the first write to lead", func() bool { return meta.QueuedWrites(db) == 0 })
	time.Sleep(50 * time.Millisecond) // the first write is inside its transaction
	for i, w := range queued {
		ctx := w.ctx
		if ctx == nil {
			ctx = t.Context()
		}
		go func() { results[i+1] <- db.Update(ctx, func(tx *meta.Tx) error { return w.fn(ctx, tx) }) }()
		waitFor(t, "a write to queue", func() bool { return meta.QueuedWrites(db) == i+1 })
	}
	close(release)
	for i := range results {
		want := ""
		if i > 0 {
			want = queued[i-1].want
		}
		select {
		case err := <-results[i]:
			if (err == nil) != (want == "") || (err != nil && want != "*" && err.Error() != want) {
				t.Fatalf("write %d: %v, want %q", i+1, err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("write %d did not return in 10 s", i+1)
		}
	}
}

// feedHolds checks that the feed holds records of tags, numbered 1, 2, ...
func feedHolds(t *testing.T, db *meta.DB, tags ...string) {
	t.Helper()
	recs, err := db.Feed(t.Context(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, r := range recs {
		if r.Seq != int64(i+1) {
			t.Fatalf("feed record %d has seq %d", i, r.Seq)
		}
		got = append(got, r.Tag)
	}
	if !slices.Equal(got, tags) {
		t.Fatalf("feed holds %v, want %v", got, tags)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
	}
}

// TestACursorAFailedWriteMovedIsTakenBack: writes of one batch move
// peers' cursors (written once at the batch's end): the furthest move
// of each peer by a write that succeeded is kept, a move by a write that
// failed is undone with it, and a move back is no move.
func TestACursorAFailedWriteMovedIsTakenBack(t *testing.T) {
	moves := func(peer string, seq int64, fail bool) queuedWrite {
		w := queuedWrite{fn: func(ctx context.Context, tx *meta.Tx) error {
			if err := tx.SetCursor(ctx, peer, seq, time.Now()); err != nil {
				return err
			}
			if fail {
				return errors.New("refused after moving the cursor")
			}
			return nil
		}}
		if fail {
			w.want = "refused after moving the cursor"
		}
		return w
	}
	for name, open := range map[string]func(t *testing.T) *meta.DB{
		"sqlite": func(t *testing.T) *meta.DB {
			db, err := meta.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "meta.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
		"postgres": func(t *testing.T) *meta.DB { return openPostgres(t, storetest.Postgres(t)) },
	} {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			runQueued(t, db, []queuedWrite{
				moves("east", 5, false),
				moves("east", 10, true),
				moves("west", 3, false),
				moves("east", 4, false),
			})
			for peer, want := range map[string]int64{"east": 5, "west": 3} {
				if got, err := db.Cursor(t.Context(), peer); err != nil || got != want {
					t.Errorf("cursor of %s = %d, %v; want %d", peer, got, err, want)
				}
			}
			runQueued(t, db, []queuedWrite{moves("east", 2, false)})
			if got, _ := db.Cursor(t.Context(), "east"); got != 5 {
				t.Errorf("cursor of east moved back to %d in a later batch; want 5", got)
			}
		})
	}
}
