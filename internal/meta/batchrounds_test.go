package meta_test

import (
	"context"
	"errors"
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

// A batch saves round trips (docs/performance.md): it records its
// writes' repositories at its end, tries all its writes' locks at once,
// keeps what it read of the settings and of the node's blob leases, and
// leases are taken and released together. These tests hold each of those
// to what one write after the other would do.

// TestABatchRecordsTheRepositoriesOfTheWritesItKeeps: the repositories
// and audit entries writes add are inserted at the batch's end, so a
// write undone at its savepoint, and a purge later in the batch, must
// leave no row of what they dropped, while a write after the purge keeps
// its repository and its entries, in the order it added them.
func TestABatchRecordsTheRepositoriesOfTheWritesItKeeps(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		link := func(repo string) func(ctx context.Context, tx *meta.Tx) error {
			return func(ctx context.Context, tx *meta.Tx) error {
				for _, ref := range []string{"1", "2"} {
					if err := tx.AppendAudit(ctx, meta.AuditEntry{At: time.Now(), Action: "push", Repo: repo, Reference: ref}); err != nil {
						return err
					}
				}
				return tx.LinkBlob(ctx, repo, digest.FromString(repo), 1, hlc.Version{Time: 1, Region: "eastus"}, time.Now())
			}
		}
		runQueued(t, db, []queuedWrite{
			{fn: func(ctx context.Context, tx *meta.Tx) error {
				if err := link("undone")(ctx, tx); err != nil {
					return err
				}
				return errors.New("refused after writing")
			}, want: "refused after writing"},
			{fn: link("purged")},
			{fn: func(ctx context.Context, tx *meta.Tx) error { return tx.Purge(ctx) }},
			{fn: link("kept")},
		})
		got, err := db.Repositories(ctx, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []string{"kept"}) {
			t.Fatalf("repositories %v, want [kept]: an undone write or a purge left the repository it recorded", got)
		}
		entries, err := db.Audit(ctx, time.Time{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		var audited []string
		for _, e := range entries {
			audited = append(audited, e.Repo+":"+e.Reference)
		}
		if want := []string{"kept:2", "kept:1"}; !slices.Equal(audited, want) {
			t.Fatalf("the audit log holds %v (newest first), want %v", audited, want)
		}
	})
}

// TestAWriteWhoseStatementFailsIsUndoneAloneInItsBatch: on PostgreSQL a
// write's savepoint goes with its first statement; a write whose first
// statement fails, or whose second does after a first that wrote, must
// be undone alone, and the writes around it kept.
func TestAWriteWhoseStatementFailsIsUndoneAloneInItsBatch(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		insert := func(ctx context.Context, tx *meta.Tx, name string) error {
			return meta.TxExec(ctx, tx, `INSERT INTO region_state (name, value) VALUES ($1, 1)`, name)
		}
		fails := func(ctx context.Context, tx *meta.Tx) error {
			return insert(ctx, tx, "before") // its key is taken: the statement fails
		}
		runQueued(t, db, []queuedWrite{
			{fn: func(ctx context.Context, tx *meta.Tx) error { return insert(ctx, tx, "before") }},
			{fn: fails, want: "*"},
			{fn: func(ctx context.Context, tx *meta.Tx) error {
				if err := insert(ctx, tx, "undone"); err != nil {
					return err
				}
				return fails(ctx, tx)
			}, want: "*"},
			{fn: func(ctx context.Context, tx *meta.Tx) error { return insert(ctx, tx, "after") }},
		})
		for name, want := range map[string]bool{"before": true, "undone": false, "after": true} {
			_, ok, err := db.RegionState(ctx, name)
			if err != nil || ok != want {
				t.Fatalf("region state %q: present %v (%v), want %v", name, ok, err, want)
			}
		}
	})
}

// TestABatchReadsTheSettingsItsWritesWrote: what a batch read of the
// settings it keeps, but a write that writes a setting reads it back, and
// a write undone at its savepoint takes what it wrote (and read) with
// it: the next write of the batch reads no lock.
func TestABatchReadsTheSettingsItsWritesWrote(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		v := hlc.Version{Time: 1, Region: "eastus"}
		lockOn := func(ctx context.Context, tx *meta.Tx) (bool, error) {
			got, err := tx.SettingsNamed(ctx, "lock", "app", "app:latest")
			return got["app"] != nil, err
		}
		hooks := func(ctx context.Context, tx *meta.Tx) (int, error) {
			got, err := tx.Settings(ctx, "webhook")
			return len(got), err
		}
		expect := func(what string, want bool, got bool, err error) error {
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s: read %v, want %v", what, got, want)
			}
			return nil
		}
		runQueued(t, db, []queuedWrite{
			{fn: func(ctx context.Context, tx *meta.Tx) error {
				n, err := hooks(ctx, tx)
				if err := expect("webhooks before", false, n > 0, err); err != nil {
					return err
				}
				on, err := lockOn(ctx, tx)
				return expect("lock before", false, on, err)
			}},
			{fn: func(ctx context.Context, tx *meta.Tx) error {
				if _, err := tx.PutSetting(ctx, meta.Setting{Kind: "webhook", Name: "w", Value: []byte(`{}`), Version: v}); err != nil {
					return err
				}
				n, err := hooks(ctx, tx)
				return expect("webhooks after the write of one", true, n == 1, err)
			}},
			{fn: func(ctx context.Context, tx *meta.Tx) error {
				if _, err := tx.PutSetting(ctx, meta.Setting{Kind: "lock", Name: "app", Value: []byte(`{}`), Version: v}); err != nil {
					return err
				}
				on, err := lockOn(ctx, tx)
				if err := expect("lock after its write", true, on, err); err != nil {
					return err
				}
				return errors.New("refused after writing")
			}, want: "refused after writing"},
			{fn: func(ctx context.Context, tx *meta.Tx) error {
				on, err := lockOn(ctx, tx)
				if err := expect("lock after the write was undone", false, on, err); err != nil {
					return err
				}
				n, err := hooks(ctx, tx)
				return expect("webhooks after the undone write", true, n == 1, err)
			}},
		})
	})
}

// TestABatchTakesItsWritesLocksTogetherAndLeavesATakenOneForTheNext: a
// batch of writes of several repositories tries their locks at once; a
// write whose repository another node's write holds waits for it, in the
// next batch, and sees what it wrote, while the batch's other writes
// commit without waiting.
func TestABatchTakesItsWritesLocksTogetherAndLeavesATakenOneForTheNext(t *testing.T) {
	dsn := storetest.Postgres(t)
	a, b := openPostgres(t, dsn), openPostgres(t, dsn)
	meta.OneLane(b) // its writes of three repositories share a batch
	ctx := t.Context()
	d := digest.FromString("image")
	setTag := func(db *meta.DB, repo string, v int64, read func(tx *meta.Tx) error) chan error {
		done := make(chan error, 1)
		go func() {
			done <- db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
				if read != nil {
					if err := read(tx); err != nil {
						return err
					}
				}
				_, err := tx.SetTag(ctx, repo, "latest", d, hlc.Version{Time: v, Region: "eastus"}, time.Now())
				return err
			})
		}()
		return done
	}
	hold := func(db *meta.DB, repo string) (release func(), done chan error) {
		inside, released := make(chan struct{}), make(chan struct{})
		done = setTag(db, repo, 1, func(*meta.Tx) error { close(inside); <-released; return nil })
		<-inside
		return func() { close(released) }, done
	}
	releaseA, doneA := hold(a, "busy")
	releaseB, doneB := hold(b, "first")
	var later []chan error
	for i, repo := range []string{"free", "busy", "free2"} {
		var read func(tx *meta.Tx) error
		if repo == "busy" {
			read = func(tx *meta.Tx) error {
				if tag, err := tx.TagRecord(ctx, "busy", "latest"); err != nil || tag.Version.Time != 1 {
					return fmt.Errorf("the write of busy ran beside node A's (read %+v, %v)", tag, err)
				}
				return nil
			}
		}
		later = append(later, setTag(b, repo, 2, read))
		waitFor(t, "a write to queue", func() bool { return meta.QueuedWrites(b) == i+1 })
	}
	releaseB()
	for _, i := range []int{0, 2} {
		select {
		case err := <-later[i]:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			releaseA()
			t.Fatal("a write of a free repository waited 10 s for another node's write of another repository")
		}
	}
	select {
	case err := <-later[1]:
		t.Fatalf("the write of busy returned (%v) while node A held its repository", err)
	default:
	}
	releaseA()
	for _, c := range []chan error{doneA, doneB, later[1]} {
		select {
		case err := <-c:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a write did not return 10 s after the locks were free")
		}
	}
}

// TestBlobLeasesTakenTogetherEachHoldUntilReleased: leases taken and
// released by many pushes at once (one request for several) each keep
// another node's sweep off their blob and hold in the node's
// transactions, a lease taken after a transaction first read the leases
// holds in it too, and once released none keeps the sweep off.
func TestBlobLeasesTakenTogetherEachHoldUntilReleased(t *testing.T) {
	ctx := t.Context()
	dsn := storetest.Postgres(t)
	a, b := openPostgres(t, dsn), openPostgres(t, dsn)
	const n = 40
	ds := make([]digest.Digest, n)
	leases := make([]*meta.BlobLease, n)
	var wg sync.WaitGroup
	for i := range n {
		ds[i] = digest.FromString(fmt.Sprint("blob ", i))
		wg.Go(func() { leases[i] = a.LeaseBlob(ctx, ds[i]) })
	}
	wg.Wait()
	late := digest.FromString("leased inside the transaction")
	var lateLease *meta.BlobLease
	defer func() { lateLease.Release() }()
	if err := a.Update(ctx, func(tx *meta.Tx) error {
		for i, l := range leases {
			if ok, err := tx.BlobLeaseHolds(ctx, l); err != nil || !ok {
				return fmt.Errorf("lease %d of %d taken together does not hold (%v)", i, n, err)
			}
		}
		lateLease = a.LeaseBlob(ctx, late)
		if ok, err := tx.BlobLeaseHolds(ctx, lateLease); err != nil || !ok {
			return fmt.Errorf("a lease taken after the transaction read the leases does not hold in it (%v)", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sweepFree := func(d digest.Digest) bool {
		t.Helper()
		var free bool
		if err := b.Update(ctx, func(tx *meta.Tx) error {
			var err error
			free, err = tx.NoBlobLease(ctx, d)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return free
	}
	for i, d := range ds {
		if sweepFree(d) {
			t.Fatalf("another node's sweep may delete blob %d, leased", i)
		}
	}
	for _, l := range leases {
		wg.Go(l.Release)
	}
	wg.Wait()
	for i, d := range ds {
		if !sweepFree(d) {
			t.Fatalf("blob %d: a released lease still keeps the sweep off", i)
		}
	}
	if sweepFree(late) {
		t.Fatal("releasing the others released the lease taken later")
	}
}
