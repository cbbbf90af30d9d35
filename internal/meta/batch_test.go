package meta_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/storetest"
)

// TestWritesThatShareATransactionRunAsIfOneAfterTheOther: on PostgreSQL
// writes waiting for their turn run in one transaction (group commit).
// A first write holds its batch open while three more queue: the second
// sets a tag, the third appends a feed record and then fails, the fourth
// reads the second's tag and appends a record. The three run in one
// batch, in order: the third alone is undone and gets its own error, the
// fourth sees the second's tag, the feed holds 1, 2 with no record of the
// third's, and the batch's commit still notifies the feed's listeners
// though the write that first notified was undone.
func TestWritesThatShareATransactionRunAsIfOneAfterTheOther(t *testing.T) {
	dsn := storetest.Postgres(t)
	db, other := openPostgres(t, dsn), openPostgres(t, dsn)
	var feedWakes atomic.Int64
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go other.Listen(ctx, meta.Listeners{Feed: func() { feedWakes.Add(1) }, Changed: func(string) {}, Failed: func(error) {}})
	waitFor(t, "the listener", other.Fresh)

	v := func(n int64) hlc.Version { return hlc.Version{Time: n, Region: "eastus"} }
	rec := func(tag string, n int64) meta.Record {
		return meta.Record{Kind: meta.KindTag, Repo: "app", Tag: tag, Version: v(n), Created: time.Now()}
	}
	release := make(chan struct{})
	results := make([]chan error, 4)
	for i := range results {
		results[i] = make(chan error, 1)
	}
	go func() {
		results[0] <- db.Update(t.Context(), func(tx *meta.Tx) error {
			<-release
			return tx.AppendFeed(t.Context(), rec("first", 1))
		})
	}()
	waitFor(t, "the first write to lead", func() bool { return meta.QueuedWrites(db) == 0 })
	time.Sleep(50 * time.Millisecond) // the first write is inside its transaction
	queue := []func(tx *meta.Tx) error{
		func(tx *meta.Tx) error {
			_, err := tx.SetTag(t.Context(), "app", "shared", digest.FromString("x"), v(2), time.Now())
			return err
		},
		func(tx *meta.Tx) error {
			if err := tx.AppendFeed(t.Context(), rec("undone", 3)); err != nil {
				return err
			}
			return errors.New("refused after writing")
		},
		func(tx *meta.Tx) error {
			if _, err := tx.TagRecord(t.Context(), "app", "shared"); err != nil {
				return errors.New("the tag an earlier write of the batch set is not seen")
			}
			return tx.AppendFeed(t.Context(), rec("last", 4))
		},
	}
	for i, fn := range queue {
		go func() { results[i+1] <- db.Update(t.Context(), fn) }()
		waitFor(t, "a write to queue", func() bool { return meta.QueuedWrites(db) == i+1 })
	}
	wakes := feedWakes.Load()
	close(release)
	for i, want := range []string{"", "", "refused after writing", ""} {
		select {
		case err := <-results[i]:
			if (err == nil) != (want == "") || (err != nil && err.Error() != want) {
				t.Fatalf("write %d: %v, want %q", i+1, err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("write %d did not return in 10 s", i+1)
		}
	}
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
	if len(got) != 2 || got[0] != "first" || got[1] != "last" {
		t.Fatalf("feed holds %v, want [first last]", got)
	}
	waitFor(t, "feed listeners to wake for both commits", func() bool { return feedWakes.Load() >= wakes+2 })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
	}
}
