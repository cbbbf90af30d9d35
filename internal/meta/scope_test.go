package meta_test

import (
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/storetest"
)

// waitingForALock reports whether some transaction of the database at dsn
// waits for an advisory lock (a write waiting for its turn).
func waitingForALock(t *testing.T, dsn string) func() bool {
	t.Helper()
	raw, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return func() bool {
		var n int
		if err := raw.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
}

// TestWritesOfDifferentRepositoriesRunAtOnceAndOfOneRepositoryInTurn:
// the region's writes are not serialized behind one lock any more (meta's
// write scopes). While node A's write of repository "one" is inside its
// transaction, node B's write of "two" commits; B's write of "one" and
// B's region-wide write wait for A's (PostgreSQL shows them waiting for
// their lock), and then see what A wrote.
func TestWritesOfDifferentRepositoriesRunAtOnceAndOfOneRepositoryInTurn(t *testing.T) {
	dsn := storetest.Postgres(t)
	a, b := openPostgres(t, dsn), openPostgres(t, dsn)
	waiting := waitingForALock(t, dsn)
	ctx := t.Context()
	v := hlc.Version{Time: 1, Region: "eastus"}
	d := digest.FromString("image")

	inside, release, doneA := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		doneA <- a.UpdateRepo(ctx, "one", func(tx *meta.Tx) error {
			if _, err := tx.SetTag(ctx, "one", "held", d, v, time.Now()); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside

	other := make(chan error, 1)
	go func() {
		other <- b.UpdateRepo(ctx, "two", func(tx *meta.Tx) error {
			_, err := tx.SetTag(ctx, "two", "free", d, v, time.Now())
			return err
		})
	}()
	select {
	case err := <-other:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("a write of repository two waited 10 s for a write of repository one on another node")
	}

	// Each in turn: B's write of "one", then B's region-wide write.
	for _, region := range []bool{false, true} {
		if region {
			inside, release = make(chan struct{}), make(chan struct{})
			go func() {
				doneA <- a.UpdateRepo(ctx, "one", func(tx *meta.Tx) error {
					close(inside)
					<-release
					_, err := tx.SetTag(ctx, "one", "held", d, hlc.Version{Time: 2, Region: "eastus"}, time.Now())
					return err
				})
			}()
			<-inside
		}
		saw := make(chan hlc.Version, 1)
		later := make(chan error, 1)
		fn := func(tx *meta.Tx) error {
			tag, err := tx.TagRecord(ctx, "one", "held")
			if err != nil {
				return err
			}
			saw <- tag.Version
			return nil
		}
		go func() {
			if region {
				later <- b.Update(ctx, fn)
			} else {
				later <- b.UpdateRepo(ctx, "one", fn)
			}
		}()
		waitFor(t, "the second write of repository one to wait for its lock", waiting)
		close(release)
		if err := <-doneA; err != nil {
			t.Fatal(err)
		}
		if err := <-later; err != nil {
			t.Fatal(err)
		}
		if got, want := <-saw, (hlc.Version{Time: int64(map[bool]int{false: 1, true: 2}[region]), Region: "eastus"}); got != want {
			t.Fatalf("region-wide %v: the write after A's saw the tag at version %v, want A's %v", region, got, want)
		}
	}
}

// TestAWriteOfARepositoryIsVersionedAfterTheLastOneOnAnyNode: a node's
// clock may lag; a write must still get a later version than the last
// write of its repository on any node (invariant 4: a later write wins).
// Node B's batch begins (and reads the region's newest version) while
// node A has not yet written; A then moves a tag with a clock an hour
// ahead of B's; B's next write of that repository, in the same batch,
// moves the tag again and must win.
func TestAWriteOfARepositoryIsVersionedAfterTheLastOneOnAnyNode(t *testing.T) {
	dsn := storetest.Postgres(t)
	a, b := openPostgres(t, dsn), openPostgres(t, dsn)
	meta.OneLane(b) // its two writes share a batch
	clockA := hlc.New("eastus", time.Now)
	clockB := hlc.New("eastus", func() time.Time { return time.Now().Add(-time.Hour) })
	a.SetClock(clockA)
	b.SetClock(clockB)
	ctx := t.Context()

	inside, release, first := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		first <- b.UpdateRepo(ctx, "other", func(tx *meta.Tx) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	if err := a.UpdateRepo(ctx, "app", func(tx *meta.Tx) error {
		_, err := tx.SetTag(ctx, "app", "latest", digest.FromString("a"), clockA.Now(), time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	won := make(chan bool, 1)
	second := make(chan error, 1)
	go func() {
		second <- b.UpdateRepo(ctx, "app", func(tx *meta.Tx) error {
			ok, err := tx.SetTag(ctx, "app", "latest", digest.FromString("b"), clockB.Now(), time.Now())
			won <- ok
			return err
		})
	}()
	waitFor(t, "B's second write to queue behind its first", func() bool { return meta.QueuedWrites(b) == 1 })
	close(release)
	for _, c := range []chan error{first, second} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	if !<-won {
		t.Fatal("B's later move of the tag lost to A's earlier one: B versioned it before A's, with its lagging clock")
	}
	tag, err := a.GetTag(ctx, "app", "latest")
	if err != nil || tag.Digest != digest.FromString("b") {
		t.Fatalf("the tag is %+v (%v), want B's digest", tag, err)
	}
}

// TestAWriteOutsideItsScopeFailsAndChangesNothing: a repository's write
// runs beside other repositories' writes, so it may not write them, nor
// region-wide rows; a write that tries fails whole. It may move a peer's
// cursor (the record it applies), only forward.
func TestAWriteOutsideItsScopeFailsAndChangesNothing(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		v := hlc.Version{Time: 1, Region: "eastus"}
		for name, fn := range map[string]func(tx *meta.Tx) error{
			"a tag of another repository": func(tx *meta.Tx) error {
				_, err := tx.SetTag(ctx, "b", "latest", digest.FromString("x"), v, time.Now())
				return err
			},
			"a setting": func(tx *meta.Tx) error {
				_, err := tx.PutSetting(ctx, meta.Setting{Kind: "lock", Name: "b", Value: []byte("{}"), Version: v})
				return err
			},
			"a region flag": func(tx *meta.Tx) error { return tx.SetRegionState(ctx, "probe", 1) },
		} {
			err := db.UpdateRepo(ctx, "a", func(tx *meta.Tx) error {
				if _, err := tx.SetTag(ctx, "a", "mine", digest.FromString("x"), v, time.Now()); err != nil {
					return err
				}
				return fn(tx)
			})
			if err == nil || !strings.Contains(err.Error(), "outside the transaction's scope") {
				t.Fatalf("%s in a write of repository a: %v, want a scope error", name, err)
			}
		}
		for _, repo := range []string{"a", "b"} {
			if _, err := db.GetTag(ctx, repo, map[string]string{"a": "mine", "b": "latest"}[repo]); !errors.Is(err, meta.ErrNotFound) {
				t.Fatalf("repository %s: %v, want no tag (the failed writes changed nothing)", repo, err)
			}
		}
		if err := db.UpdateRepo(ctx, "", func(*meta.Tx) error { return nil }); err == nil {
			t.Fatal("a repository write with no repository ran")
		}
		// A record of a repository applied from a peer's feed moves the
		// peer's cursor in the repository's write, only forward.
		for _, seq := range []int64{7, 5} {
			if err := db.UpdateRepo(ctx, "a", func(tx *meta.Tx) error { return tx.SetCursor(ctx, "westeurope", seq, time.Now()) }); err != nil {
				t.Fatalf("a peer's cursor in a write of repository a: %v", err)
			}
		}
		if c, err := db.Cursor(ctx, "westeurope"); err != nil || c != 7 {
			t.Fatalf("cursor %d (%v), want 7: it moves only forward", c, err)
		}
	})
}
