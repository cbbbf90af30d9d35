package meta

import (
	"context"
	"strings"
	"sync"
	"time"
)

// WriterPragma reads a pragma on the connection SQLite commits through.
func WriterPragma(ctx context.Context, db *DB, name string) (string, error) {
	var v string
	err := db.w.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v, err
}

// QueuedWrites is how many writes wait for the batch running now.
func QueuedWrites(db *DB) int {
	n := 0
	for i := range db.lanes {
		n += db.lanes[i].waiting()
	}
	return n
}

// KnownNodes is how many other nodes db knows (cache leases).
func KnownNodes(db *DB) int { return db.lst.memberCount() }

// Exec runs a statement on db's store directly, as an operator (or a bug)
// could, behind georeg's back.
func Exec(db *DB, q string, args ...any) error {
	_, err := db.w.Exec(q, args...)
	return err
}

// QueryPlan is SQLite's plan for q (EXPLAIN QUERY PLAN), one line per step.
func QueryPlan(db *DB, q string, args ...any) (string, error) {
	rows, err := db.r.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var out string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return "", err
		}
		out += detail + "\n"
	}
	return out, rows.Err()
}

// FeedBytesQueries are the queries FeedBytes runs.
var FeedBytesQueries = []string{feedTotalQuery, feedBeforeQuery}

// MigrationNamed is the number of the migration whose text holds s
// (migrations before it: what region_state "schema" counts), -1 for none.
func MigrationNamed(s string) int {
	for i, m := range migrations {
		if strings.Contains(m, s) {
			return i
		}
	}
	return -1
}

// TxExec runs a statement in tx, as a write's own statements run.
func TxExec(ctx context.Context, tx *Tx, q string, args ...any) error {
	_, err := tx.exec(ctx, q, args...)
	return err
}

// HoldLeaseConn keeps db's lease requests from running until the returned
// func is called, as a request the database does not answer would.
func HoldLeaseConn(db *DB) (release func()) {
	db.leases.connMu.Lock()
	return db.leases.connMu.Unlock
}

// OneLane makes db run one batch at a time (call it before db's first
// write): for tests of what a batch does with the writes queued in it.
func OneLane(db *DB) { db.SetWriteLanes(1) }

// LaneOf is the lane a write of repo waits in.
func LaneOf(db *DB, repo string) int {
	q := db.lane(repo)
	for i := range db.lanes {
		if q == &db.lanes[i] {
			return i
		}
	}
	return -1
}

// HoldBeforeSequence stops db's transactions that changed repo's tags or
// manifests as they are about to take the feed sequencer: inside is
// closed when one is there, and it goes on once release is called.
func HoldBeforeSequence(db *DB, repo string) (inside <-chan struct{}, release func()) {
	in, out := make(chan struct{}), make(chan struct{})
	var once sync.Once
	db.beforeSequence = func(t *Tx) {
		if _, ok := t.changedRepos[repo]; ok {
			once.Do(func() { close(in) })
			<-out
		}
	}
	return in, func() { close(out) }
}

// LanesFor is lanesFor.
func LanesFor(rtt time.Duration) int { return lanesFor(rtt) }

// LanesNow is lanesNow.
func LanesNow(lanes, nodes int) int { return lanesNow(lanes, nodes) }
