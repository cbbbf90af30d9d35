package meta

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// Blob leases every node of a region sees. Garbage collection's sweep
// deletes a blob's bytes only where no link and no lease holds it; a
// node's own leases are in its memory (region/leases.go), which on
// SQLite is the whole region, but on PostgreSQL the sweep may run on
// another node. There a lease is also a shared advisory lock on the
// blob, held on one connection per node from before the bytes are
// written until their link commits; the sweep deletes only a blob whose
// lock it can take exclusive in its transaction, which no lease can then
// take until the delete committed. A link whose lease still holds
// (BlobLeaseHolds, read in its transaction) needs no look at the content
// store: no sweep can have deleted the bytes since they were written.

// blobLeaseClass is the first key of a blob's advisory lock; the second
// is the digest hashed to 31 bits. Two blobs on one key only keep the
// sweep off both while either is leased.
const blobLeaseClass int32 = 0x67656f62 // "geob"

func blobLeaseKey(d digest.Digest) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(d))
	return int32(h.Sum32() & 0x7fffffff)
}

// BlobLease is a lease on one blob's bytes, held from before they are
// written until their link commits; Release ends it.
type BlobLease struct {
	db  *DB
	key int32
	// The PostgreSQL backend holding it: its pid and when it started (a
	// pid is reused by a later backend).
	pid     int32
	started int64
	held    bool // the lock was taken (PostgreSQL)
}

// leaseConn is the connection a PostgreSQL node holds its blob leases on
// (advisory locks belong to a connection). Leases taken and released
// while a request is out wait in a queue and go in the next request
// together, one round trip for all of them (as writes share a batch:
// batch.go), so concurrent pushes do not take turns at it.
type leaseConn struct {
	queue  leaderQueue[*leaseOp]
	failed atomic.Int64 // when the last request failed (Unix ns): none for leaseBackoff after

	// The connection, the leading goroutine's (and Close's) under connMu.
	connMu  sync.Mutex
	conn    *sql.Conn
	pid     int32
	started int64 // the backend's start, in microseconds
}

// leaseOp is a lease to take, or one to release, waiting for its request.
type leaseOp struct {
	l       *BlobLease
	release bool
	done    chan struct{}
}

// maxLeaseOps bounds the leases one request takes or releases.
const maxLeaseOps = 512

// leaseTimeout bounds each request on the lease connection; after a
// failure leases are not asked for during leaseBackoff (links then ask
// the content store), so a database that hangs costs a node's writes one
// timeout, not one each.
const (
	leaseTimeout = 5 * time.Second
	leaseBackoff = time.Second
)

// LeaseBlob leases blob d (see above). On PostgreSQL a lease that could
// not be taken (the sweep is deleting the blob right now, or the
// database does not answer) is returned not held: the link then looks
// at the content store, as without a lease. So is one whose caller gave
// up (ctx ended) before its request answered; that request may still
// take it, and releases it when it does.
func (db *DB) LeaseBlob(ctx context.Context, d digest.Digest) *BlobLease {
	l := &BlobLease{db: db, key: blobLeaseKey(d)}
	if db.dialect != postgres {
		return l
	}
	op := &leaseOp{l: l}
	if !db.queueLease(op) {
		return l // not held
	}
	select {
	case <-op.done:
		return l
	case <-ctx.Done():
		go func() {
			<-op.done // bounded: leaseTimeout, twice at most
			l.Release()
		}()
		return &BlobLease{db: db, key: l.key} // not held
	}
}

// Release ends the lease (once it is no longer needed: after the link
// committed, or when the write failed).
func (l *BlobLease) Release() {
	if l == nil || !l.held {
		return
	}
	op := &leaseOp{l: l, release: true}
	if l.db.queueLease(op) {
		<-op.done // bounded, as above
	}
	l.held = false
}

// queueLease queues op for the next request on the lease connection; its
// done closes once the request answered. A lease to take is not queued
// (false) during leaseBackoff after a failed request.
func (db *DB) queueLease(op *leaseOp) bool {
	lc := &db.leases
	if !op.release && time.Since(time.Unix(0, lc.failed.Load())) < leaseBackoff {
		return false
	}
	op.done = make(chan struct{})
	if lc.queue.add(op) {
		go db.leadLeases()
	}
	return true
}

// leadLeases runs the queue's requests until it is empty.
func (db *DB) leadLeases() {
	lc := &db.leases
	for {
		ops := lc.queue.take(maxLeaseOps)
		if len(ops) == 0 {
			return
		}
		lc.connMu.Lock()
		failed := db.runLeaseOps(ops)
		lc.connMu.Unlock()
		if failed {
			lc.failed.Store(time.Now().UnixNano())
		}
		for _, op := range ops {
			close(op.done)
		}
	}
}

// runLeaseOps takes and releases ops' leases in one request (connMu
// held), and reports whether the database failed to answer: the leases
// to take are then not held. Twice at most: a connection the database
// ended since its last use (a restart) fails once, and a new one is
// opened; a lease to release that was taken on a connection since gone
// is gone with it.
func (db *DB) runLeaseOps(ops []*leaseOp) bool {
	lc := &db.leases
	ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
	defer cancel()
	for range 2 {
		if lc.conn == nil {
			if !db.openLeaseConn(ctx) {
				return true
			}
		}
		var keys []int32
		var take []bool
		var asked []*leaseOp
		for _, op := range ops {
			if op.release && (op.l.pid != lc.pid || op.l.started != lc.started) {
				continue // the connection, and the lock, are gone already
			}
			keys, take, asked = append(keys, op.l.key), append(take, !op.release), append(asked, op)
		}
		if len(asked) == 0 {
			return false
		}
		got, err := leaseRequest(ctx, lc.conn, keys, take)
		if err != nil || len(got) != len(asked) {
			lc.drop() // its locks go with it
			continue
		}
		for i, op := range asked {
			if !op.release {
				op.l.pid, op.l.started, op.l.held = lc.pid, lc.started, got[i]
			}
		}
		return false
	}
	return true
}

// leaseRequest takes (take[i]) or releases each lease keys[i] on conn,
// in order, in one statement, and returns each one's answer (taken,
// released).
func leaseRequest(ctx context.Context, conn *sql.Conn, keys []int32, take []bool) ([]bool, error) {
	rows, err := conn.QueryContext(ctx, `SELECT CASE WHEN r.take THEN pg_try_advisory_lock_shared($1, r.key)
			ELSE pg_advisory_unlock_shared($1, r.key) END
		FROM unnest($2::int4[], $3::bool[]) WITH ORDINALITY AS r(key, take, n) ORDER BY r.n`,
		blobLeaseClass, keys, take)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []bool
	for rows.Next() {
		var ok bool
		if err := rows.Scan(&ok); err != nil {
			return nil, err
		}
		out = append(out, ok)
	}
	return out, rows.Err()
}

// openLeaseConn opens the lease connection and reads which backend it is
// (connMu held); false when the database did not answer.
func (db *DB) openLeaseConn(ctx context.Context) bool {
	lc := &db.leases
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return false
	}
	lc.conn = conn
	if err := conn.QueryRowContext(ctx, `SELECT pid, (extract(epoch FROM backend_start) * 1000000)::int8
		FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&lc.pid, &lc.started); err != nil {
		lc.drop()
		return false
	}
	return true
}

// drop closes the lease connection, and with it every lease it held
// (connMu held): links under them look at the content store.
func (lc *leaseConn) drop() {
	if lc.conn != nil {
		// Not back to the pool: its locks go with it.
		_ = lc.conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = lc.conn.Close()
		lc.conn, lc.pid, lc.started = nil, 0, 0
	}
}

// BlobLeaseHolds reports whether l has held since it was taken, read in
// the transaction (after its locks: a sweep that deleted the blob has
// committed): always on SQLite (one node, whose own leases the sweep
// checks); on PostgreSQL while the lease's connection still holds its
// lock. The first call of a transaction reads every blob lease that
// connection holds, in one query, and the later ones of the transaction
// answer from it while it says held: a sweep is a region-wide write,
// which cannot run while this transaction holds its locks, so a lease
// held when read stays held for this transaction's purpose. One it did
// not list (taken since, or on a new connection) is read again.
func (tx *Tx) BlobLeaseHolds(ctx context.Context, l *BlobLease) (bool, error) {
	if l == nil {
		return false, nil
	}
	if tx.dialect != postgres {
		return true, nil
	}
	if !l.held {
		return false, nil
	}
	h := &tx.leasesHeld
	if h.pid == l.pid && h.started == l.started && h.keys[l.key] {
		return true, nil
	}
	rows, err := tx.tx.QueryContext(ctx, `SELECT l.objid::int8 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.pid = $1 AND l.classid::int8 = $2 AND l.objsubid = 2
		AND l.mode = 'ShareLock' AND l.granted AND (extract(epoch FROM a.backend_start) * 1000000)::int8 = $3`,
		l.pid, blobLeaseClass, l.started)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	*h = leasesHeld{pid: l.pid, started: l.started, keys: map[int32]bool{}}
	for rows.Next() {
		var key int64
		if err := rows.Scan(&key); err != nil {
			return false, err
		}
		h.keys[int32(key)] = true
	}
	if err := rows.Err(); err != nil {
		*h = leasesHeld{}
		return false, err
	}
	return h.keys[l.key], nil
}

// leasesHeld is what a transaction read of the blob leases one node's
// lease connection (pid, started) holds: their keys (BlobLeaseHolds).
type leasesHeld struct {
	pid     int32
	started int64
	keys    map[int32]bool
}

// NoBlobLease reports whether no node leases blob d, in the sweep's
// transaction; on PostgreSQL it then holds d's lock exclusive until the
// transaction ends, so no lease is taken while the bytes are deleted.
// On SQLite the region's one node checks its own leases.
func (tx *Tx) NoBlobLease(ctx context.Context, d digest.Digest) (bool, error) {
	if tx.dialect != postgres {
		return true, nil
	}
	var free bool
	err := tx.tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1, $2)`, blobLeaseClass, blobLeaseKey(d)).Scan(&free)
	return free, err
}

// closeLeases ends every lease the node holds (Close).
func (db *DB) closeLeases() {
	db.leases.connMu.Lock()
	defer db.leases.connMu.Unlock()
	db.leases.drop()
}
