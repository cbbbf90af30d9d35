package meta

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"
)

// Group commit. On PostgreSQL every write transaction of a region takes
// the region's one lock and holds it through its commit, WAL flush
// included, so commits never share a flush and a region wrote at most
// one transaction per flush (about 330/s on the bench machine, whatever
// its number of nodes: docs/performance.md). So a node runs the writes
// that wait for their turn together: one transaction, one lock, one flush
// for all of them, each in a savepoint of its own, one after the other in
// the order they came. Each sees what the ones before it wrote, exactly as
// if they had run one after the other; one that fails is rolled back to
// its savepoint alone and gets its own error; a failed commit fails them
// all (none of them is acknowledged). The feed stays gap-free and in
// order: its numbers are taken under the region's lock as before.

// maxBatch bounds the writes one transaction runs.
const maxBatch = 64

// batchTimeout bounds a batch's transaction: it is run on behalf of many
// callers, so none of their contexts may end it.
const batchTimeout = time.Minute

type writeReq struct {
	ctx   context.Context
	fn    func(*Tx) error
	asked time.Time
	done  chan error
}

// batcher queues a node's writes; a write that finds no batch running
// starts the goroutine that runs batches until the queue is empty (so no
// caller waits for others' writes after its own is done).
type batcher struct {
	mu      sync.Mutex
	queue   []*writeReq
	leading bool
}

// updateBatched is Update on PostgreSQL.
func (db *DB) updateBatched(ctx context.Context, fn func(*Tx) error) error {
	req := &writeReq{ctx: ctx, fn: fn, asked: time.Now(), done: make(chan error, 1)}
	b := &db.batch
	b.mu.Lock()
	b.queue = append(b.queue, req)
	lead := !b.leading
	b.leading = true
	b.mu.Unlock()
	if lead {
		go db.lead()
	}
	return <-req.done
}

// lead runs batches until the queue is empty.
func (db *DB) lead() {
	b := &db.batch
	for {
		b.mu.Lock()
		n := min(len(b.queue), maxBatch)
		if n == 0 {
			b.leading = false
			b.mu.Unlock()
			return
		}
		reqs := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()
		errs, change, committed := db.runBatch(reqs)
		deliver := func() {
			for i, r := range reqs {
				r.done <- errs[i]
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

// runBatch runs reqs in one transaction and returns each one's result,
// and, when it committed a change of tags or manifests, the change's
// number and when it committed (lease.go).
func (db *DB) runBatch(reqs []*writeReq) ([]error, uint64, time.Duration) {
	errs := make([]error, len(reqs))
	fail := func(err error) ([]error, uint64, time.Duration) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs, 0, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fail(fmt.Errorf("begin: %w", err))
	}
	t := &Tx{tx: tx, dialect: db.dialect, locked: time.Now()}
	if err := db.begin(ctx, t); err != nil {
		_ = tx.Rollback()
		return fail(err)
	}
	single := len(reqs) == 1
	ran := 0
	open := false // a savepoint is set and not released (commit releases it)
	for i, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err // its caller gave up before its turn: not run
			continue
		}
		db.writes.Add(1)
		db.writeWaitNs.Add(int64(time.Since(r.asked)))
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
		notified, ensured := t.notified, maps.Clone(t.ensured)
		if errs[i] = r.fn(t); errs[i] != nil {
			// What it wrote is undone, its notification with it, and
			// the repositories it recorded are no longer recorded.
			t.notified, t.ensured = notified, ensured
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
	if err := db.end(ctx, t); err != nil {
		_ = tx.Rollback()
		return fail(err)
	}
	if err := tx.Commit(); err != nil {
		return fail(fmt.Errorf("commit: %w", err))
	}
	return errs, t.change, db.lst.now()
}
