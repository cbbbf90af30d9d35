package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Group commit. A write transaction is durable once its commit is
// flushed: on PostgreSQL it holds its locks through that flush, so a
// region wrote at most one transaction per flush of what one lock covers
// (about 330/s on the bench machine: docs/performance.md); on SQLite the
// one writer connection waits for the WAL's fsync at every commit, so
// concurrent pushes took turns at one fsync each. So a node runs the
// writes that wait for their turn together: one transaction, one flush
// for all of them, each in a savepoint of its own, one after the other in
// the order they came. Each sees what the ones before it wrote, exactly
// as if they had run one after the other; one that fails is rolled back
// to its savepoint alone and gets its own error; a failed commit fails
// them all (none of them is acknowledged). On PostgreSQL the first write
// waits for the locks of its scope; a later one whose locks another
// transaction holds is not run in this batch but first in the next
// (scope.go: no deadlock), and the feed stays gap-free and in order: its
// numbers are taken under the sequencer's lock at the end. On SQLite the
// transaction holds the database's one write lock, and the feed's numbers
// are the table's own, taken in the order the writes run.

// maxBatch bounds the writes one transaction runs.
const maxBatch = 64

// batchTimeout bounds a batch's transaction: it is run on behalf of many
// callers, so none of their contexts may end it.
const batchTimeout = time.Minute

// sqliteBatchTimeout is batchTimeout on SQLite, where the bound is also
// every statement's (its writes no longer end with their callers): a
// SQLite transaction waits on no other node, only on its own work, and a
// region's largest writes run in one (a joining region's largest
// repository from a snapshot, a retired region's purge).
const sqliteBatchTimeout = 10 * time.Minute

type writeReq struct {
	ctx   context.Context
	scope string
	fn    func(*Tx) error
	asked time.Time
	done  chan error
}

// updateBatched is Update: the write waits for its batch's commit.
func (db *DB) updateBatched(ctx context.Context, scope string, fn func(*Tx) error) error {
	req := &writeReq{ctx: ctx, scope: scope, fn: fn, asked: time.Now(), done: make(chan error, 1)}
	q := db.lane(scope)
	if q.add(req) {
		go db.lead(q)
	}
	return <-req.done
}

// lane is the queue a write of scope waits in.
func (db *DB) lane(scope string) *leaderQueue[*writeReq] {
	n := len(db.lanes)
	if db.lanesAuto && n > 1 {
		n = lanesNow(n, 1+db.lst.memberCount())
	}
	if n == 1 || scope == "" {
		return &db.lanes[0]
	}
	return &db.lanes[int(uint32(repoLockKey(scope))%uint32(n))]
}

// lead runs q's batches until it is empty.
func (db *DB) lead(q *leaderQueue[*writeReq]) {
	for {
		reqs := q.take(maxBatch)
		if len(reqs) == 0 {
			return
		}
		errs, change, committed := db.runBatch(reqs)
		var later []*writeReq
		for i, r := range reqs {
			if errors.Is(errs[i], errLocked) {
				later = append(later, r)
			}
		}
		if len(later) > 0 {
			q.putBack(later)
		}
		deliver := func() {
			for i, r := range reqs {
				if !errors.Is(errs[i], errLocked) {
					r.done <- errs[i]
				}
			}
		}
		if change == 0 {
			deliver()
			continue
		}
		// The writers answer once the other nodes have heard the change
		// (lease.go); the next batch need not wait for that.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), leaseFor+leaseMargin)
			defer cancel()
			db.lst.await(ctx, change, committed)
			deliver()
		}()
	}
}

// errLocked is runBatch's result for a write it did not run because
// another transaction holds a lock of its scope: it runs in the next.
var errLocked = errors.New("locked by another transaction")

// runBatch runs reqs in one transaction and returns each one's result,
// and, when it committed a change of tags or manifests, the change's
// number and when it committed (lease.go).
func (db *DB) runBatch(reqs []*writeReq) ([]error, uint64, time.Duration) {
	errs := make([]error, len(reqs))
	fail := func(err error) ([]error, uint64, time.Duration) {
		for i := range errs {
			if errs[i] == nil || errors.Is(errs[i], errLocked) {
				errs[i] = err
			}
		}
		return errs, 0, 0
	}
	timeout := batchTimeout
	if db.dialect == sqlite {
		timeout = sqliteBatchTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fail(fmt.Errorf("begin: %w", err))
	}
	t := &Tx{tx: tx, db: db, dialect: db.dialect}
	if db.dialect == sqlite {
		// A statement SQLite interrupts inside a transaction (its caller's
		// context ended) rolls the whole transaction back, the others'
		// writes with it: the writes run to their end under the batch's
		// own bound instead (a caller that gave up before its turn is not
		// run at all, below).
		t.bound = ctx
	}
	if err := db.begin(ctx, t, reqs[0].scope); err != nil {
		_ = tx.Rollback()
		return fail(err)
	}
	single := len(reqs) == 1
	if !single {
		scopes := make([]string, len(reqs)-1)
		for i, r := range reqs[1:] {
			scopes[i] = r.scope
		}
		if err := db.lockAhead(ctx, t, scopes); err != nil {
			_ = tx.Rollback()
			return fail(err)
		}
	}
	ran := 0
	open := false // a savepoint is set and not released (commit releases it)
	for i, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err // its caller gave up before its turn: not run
			continue
		}
		// Taken before the savepoint: a lock outlives the write's undo.
		if ok, err := db.lock(ctx, t, r.scope, false); err != nil {
			_ = tx.Rollback()
			return fail(err)
		} else if !ok {
			errs[i] = errLocked
			continue
		}
		t.scope = r.scope
		db.waited(r.asked, time.Now())
		if single {
			if errs[i] = r.fn(t); errs[i] != nil {
				_ = tx.Rollback()
				return errs, 0, 0
			}
			ran++
			continue
		}
		// One round trip between two writes: the savepoint of the one
		// before is released (it is kept) as the next one's is set.
		mark := "SAVEPOINT write"
		if open {
			mark = "RELEASE SAVEPOINT write; SAVEPOINT write"
		}
		if _, err := tx.ExecContext(ctx, mark); err != nil {
			_ = tx.Rollback()
			return fail(fmt.Errorf("savepoint: %w", err))
		}
		open = true
		ensured, summaries, cursors, enqueued := maps.Clone(t.ensured), maps.Clone(t.summaries), maps.Clone(t.cursors), t.enqueued
		appended, marked, audited := len(t.feed), len(t.marks), len(t.audits)
		if errs[i] = r.fn(t); errs[i] != nil {
			// What it wrote is undone, its feed records, presence marks,
			// cursor moves, deliveries and audit entries with it, and the
			// repositories it recorded or whose summaries it changed are no
			// longer noted.
			t.ensured, t.summaries, t.cursors, t.enqueued = ensured, summaries, cursors, enqueued
			t.feed, t.marks = t.feed[:appended], t.marks[:marked]
			t.audits = t.audits[:audited]
			t.settingsRead = settingsRead{} // it may have read settings it wrote
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT write; RELEASE SAVEPOINT write"); err != nil {
				_ = tx.Rollback()
				return fail(fmt.Errorf("rollback to savepoint: %w", err))
			}
			open = false
			continue
		}
		ran++
	}
	if ran == 0 {
		_ = tx.Rollback()
		return errs, 0, 0
	}
	t.scope = ""
	if db.dialect == sqlite {
		if err := t.finish(ctx); err != nil {
			_ = tx.Rollback()
			return fail(err)
		}
		if err := tx.Commit(); err != nil {
			return fail(fmt.Errorf("commit: %w", err))
		}
		db.committed(t)
		db.writeStmts.prepareWanted(ctx, db.w)
		return errs, 0, 0
	}
	if err := db.end(ctx, t); err != nil {
		_ = tx.Rollback()
		return fail(err)
	}
	if err := tx.Commit(); err != nil {
		return fail(fmt.Errorf("commit: %w", err))
	}
	db.committed(t)
	return errs, t.change, db.lst.now()
}

// committed tells, after t committed, whoever asked to know what it did
// (OnDeliveriesEnqueued).
func (db *DB) committed(t *Tx) {
	if t.enqueued && db.enqueued != nil {
		db.enqueued()
	}
}

// Write lanes (PostgreSQL). A node runs one batch per lane at once, each
// lane taking the writes of its repositories (by the repository lock's
// hash; region-wide writes go in the first lane), so a repository's
// writes still wait in one queue on a node. A batch spends most of its
// time on round trips to PostgreSQL, one statement after another, so
// when PostgreSQL is a network round trip away one lane leaves both the
// node and PostgreSQL idle while its writes queue; more lanes overlap
// those round trips, at the cost of smaller batches (more transactions,
// each one flush, per write). Lanes are to a node what more nodes are to
// a region: write scopes keep their writes apart (scope.go), and a
// change is numbered in commit order (end).
//
// Unless set (metadata.writeLanes), a node measures its round trip to
// PostgreSQL as it opens the store and takes lanesFor it: measured
// 2026-12-07 (docs/performance.md), 100 concurrent small pushes with
// PostgreSQL 2.3 ms away took 2.8 s with one lane, 1.4 s with two, 0.76
// with four and 0.68 with eight; with PostgreSQL on the same host (0.14
// ms) more lanes gained nothing beyond the noise and cost PostgreSQL's
// CPU per write up to half as much again, with several nodes on a
// 2-core machine most.
const (
	MaxWriteLanes = 16
	autoLanesMax  = 8
	rttPerLane    = 200 * time.Microsecond
)

// lanesFor is how many lanes a region whose round trip to PostgreSQL is
// rtt runs: one more per rttPerLane, at most autoLanesMax.
func lanesFor(rtt time.Duration) int {
	return min(autoLanesMax, 1+int(rtt/rttPerLane))
}

// lanesNow is how many of a node's lanes (lanesFor, chosen by itself)
// take writes while nodes nodes write (itself and those it hears): the
// region's share of it, at least one. Every transaction's end takes its
// turn at the region's one feed sequencer, two round trips each, so the
// region's transactions per second are bounded whatever its nodes and
// lanes; past that bound more lanes only make batches smaller (measured
// 2026-12-07 with PostgreSQL 2.3 ms away and eight lanes a node: one
// node 125 small pushes/s, two 108, three 80).
func lanesNow(lanes, nodes int) int {
	return max(1, lanes/max(1, nodes))
}

// SetWriteLanes sets how many batches db runs at once (PostgreSQL; 1 to
// MaxWriteLanes). Call it after Open, before db is used.
func (db *DB) SetWriteLanes(n int) {
	if db.dialect == postgres && n >= 1 && n <= MaxWriteLanes {
		db.lanes, db.lanesAuto = make([]leaderQueue[*writeReq], n), false
	}
}

// WriteLanes reports how many batches db runs at once, and the round trip
// to PostgreSQL measured as it opened (0 on SQLite).
func (db *DB) WriteLanes() (int, time.Duration) { return len(db.lanes), db.rtt }

// measureRoundTrip is the median of a few `SELECT 1` on one connection
// of the pool (0 when one fails: the lanes then stay one).
func measureRoundTrip(ctx context.Context, pool *sql.DB) time.Duration {
	conn, err := pool.Conn(ctx)
	if err != nil {
		return 0
	}
	defer conn.Close()
	var one int
	times := make([]time.Duration, 0, 15)
	for range cap(times) {
		t0 := time.Now()
		if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			return 0
		}
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	return times[len(times)/2]
}
