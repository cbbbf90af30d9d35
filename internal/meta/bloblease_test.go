package meta_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/storetest"
)

// TestABlobLeaseKeepsEveryNodesSweepOffUntilReleasedOrLost: on
// PostgreSQL a lease taken on one node keeps another node's sweep off the
// blob (and only that blob) and holds in the leasing node's transactions;
// once released the sweep may take it. When the lease's connection is
// lost (the database ended it), the lease no longer holds, the sweep may
// take the blob, and a new lease is taken on a new connection. A lease
// nobody took never holds.
func TestABlobLeaseKeepsEveryNodesSweepOffUntilReleasedOrLost(t *testing.T) {
	ctx := t.Context()
	dsn := storetest.Postgres(t)
	a, b := openPostgres(t, dsn), openPostgres(t, dsn)
	d, other := digest.FromString("leased"), digest.FromString("not leased")
	// inTx is what read answers in a write transaction of db.
	inTx := func(db *meta.DB, read func(tx *meta.Tx) (bool, error)) bool {
		t.Helper()
		var got bool
		if err := db.Update(ctx, func(tx *meta.Tx) error {
			var err error
			got, err = read(tx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	holds := func(db *meta.DB, l *meta.BlobLease) bool {
		t.Helper()
		return inTx(db, func(tx *meta.Tx) (bool, error) { return tx.BlobLeaseHolds(ctx, l) })
	}
	sweepFree := func(db *meta.DB, d digest.Digest) bool {
		t.Helper()
		return inTx(db, func(tx *meta.Tx) (bool, error) { return tx.NoBlobLease(ctx, d) })
	}
	if holds(a, nil) {
		t.Fatal("no lease holds")
	}
	l := a.LeaseBlob(ctx, d)
	if !holds(a, l) {
		t.Fatal("a lease just taken does not hold")
	}
	if sweepFree(b, d) {
		t.Fatal("another node's sweep may delete a leased blob")
	}
	if !sweepFree(b, other) {
		t.Fatal("a lease on one blob keeps the sweep off another")
	}
	nested := a.LeaseBlob(ctx, d)
	l.Release()
	if sweepFree(b, d) || !holds(a, nested) {
		t.Fatal("releasing one of two leases of a blob released both")
	}
	nested.Release()
	if !sweepFree(b, d) {
		t.Fatal("a released lease still keeps the sweep off")
	}

	// The lease's connection is ended under it.
	lost := a.LeaseBlob(ctx, d)
	raw, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var pid int
	if err := raw.QueryRowContext(ctx, `SELECT l.pid FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.mode = 'ShareLock' AND l.granted AND l.pid <> pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	// The backend ends, and its locks go, a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still there 10 s after it was ended", pid)
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a bounded wait
	}
	if holds(a, lost) {
		t.Fatal("a lease whose connection was lost still holds: a link would trust bytes a sweep may have deleted")
	}
	if !sweepFree(b, d) {
		t.Fatal("a lost lease keeps the sweep off")
	}
	again := a.LeaseBlob(ctx, d) // on a new connection: the first try finds the old one ended
	lost.Release()               // its connection is gone: nothing to do
	defer again.Release()
	if !holds(a, again) || sweepFree(b, d) {
		t.Fatal("after its connection was lost a node cannot lease again")
	}
}

// BenchmarkBlobLease is a lease taken and released on PostgreSQL: two
// round trips on the node's lease connection (docs/performance.md,
// capacity model).
func BenchmarkBlobLease(b *testing.B) {
	db, err := meta.OpenPostgres(b.Context(), storetest.Postgres(b))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	d := digest.FromString("benchmarked")
	for b.Loop() {
		l := db.LeaseBlob(b.Context(), d)
		l.Release()
	}
}

// TestALeaseWhoseCallerGaveUpIsNotHeldAndReleasedOnceTaken: a lease
// asked while the lease connection's request cannot run (held here, as a
// database that does not answer would hold it) returns, not held, as
// soon as its caller gives up, instead of waiting for the request; once
// the request runs and takes it, it is released, and another node's
// sweep may delete the blob again.
func TestALeaseWhoseCallerGaveUpIsNotHeldAndReleasedOnceTaken(t *testing.T) {
	ctx := t.Context()
	dsn := storetest.Postgres(t)
	a, b := openPostgres(t, dsn), openPostgres(t, dsn)
	d := digest.FromString("asked by a caller that gave up")
	unhold := meta.HoldLeaseConn(a)
	gaveUp, cancel := context.WithCancel(ctx)
	got := make(chan *meta.BlobLease, 1)
	go func() { got <- a.LeaseBlob(gaveUp, d) }()
	cancel()
	var l *meta.BlobLease
	select {
	case l = <-got:
	case <-time.After(30 * time.Second): // a bound, not a timing: the request cannot run until unhold
		unhold()
		t.Fatal("LeaseBlob waits for a request that cannot run after its caller gave up")
	}
	unhold()
	if err := a.Update(ctx, func(tx *meta.Tx) error {
		if held, err := tx.BlobLeaseHolds(ctx, l); err != nil || held {
			return fmt.Errorf("a lease whose caller gave up holds (%v)", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The request ran (a later lease went after it) and took the lease;
	// it is released, not left held on the connection.
	a.LeaseBlob(ctx, digest.FromString("after")).Release()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var free bool
		if err := b.Update(ctx, func(tx *meta.Tx) error {
			var err error
			free, err = tx.NoBlobLease(ctx, d)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if free {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease taken for a caller that gave up is still held 10 s later: it keeps the sweep off the blob")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
