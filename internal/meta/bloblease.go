package meta

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"hash/fnv"
	"sync"
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
// (advisory locks belong to a connection).
type leaseConn struct {
	mu      sync.Mutex
	conn    *sql.Conn
	pid     int32
	started int64     // the backend's start, in microseconds
	failed  time.Time // the last request that failed: none for leaseBackoff after
}

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
// at the content store, as without a lease.
func (db *DB) LeaseBlob(ctx context.Context, d digest.Digest) *BlobLease {
	l := &BlobLease{db: db, key: blobLeaseKey(d)}
	if db.dialect != postgres {
		return l
	}
	lc := &db.leases
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if time.Since(lc.failed) < leaseBackoff {
		return l
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseTimeout)
	defer cancel()
	// Twice at most: a connection the database ended since its last use
	// (a restart) fails once, and a new one is opened.
	for range 2 {
		if lc.conn == nil {
			conn, err := db.w.Conn(ctx)
			if err != nil {
				lc.failed = time.Now()
				return l
			}
			lc.conn = conn
			if err := conn.QueryRowContext(ctx, `SELECT pid, (extract(epoch FROM backend_start) * 1000000)::int8
				FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&lc.pid, &lc.started); err != nil {
				lc.drop()
				lc.failed = time.Now()
				return l
			}
		}
		var ok bool
		if err := lc.conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock_shared($1, $2)`, blobLeaseClass, l.key).Scan(&ok); err != nil {
			lc.drop()
			continue
		}
		l.pid, l.started, l.held = lc.pid, lc.started, ok
		return l
	}
	lc.failed = time.Now()
	return l
}

// drop closes the lease connection, and with it every lease it held
// (lc.mu held): links under them look at the content store.
func (lc *leaseConn) drop() {
	if lc.conn != nil {
		// Not back to the pool: its locks go with it.
		_ = lc.conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = lc.conn.Close()
		lc.conn, lc.pid, lc.started = nil, 0, 0
	}
}

// Release ends the lease (once it is no longer needed: after the link
// committed, or when the write failed).
func (l *BlobLease) Release() {
	if l == nil || !l.held {
		return
	}
	l.held = false
	lc := &l.db.leases
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.conn == nil || lc.pid != l.pid || lc.started != l.started {
		return // the connection, and the lock, are gone already
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
	defer cancel()
	var ok bool
	if err := lc.conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock_shared($1, $2)`, blobLeaseClass, l.key).Scan(&ok); err != nil {
		lc.drop() // its locks go with it
	}
}

// BlobLeaseHolds reports whether l has held since it was taken, read in
// the transaction (after its locks: a sweep that deleted the blob has
// committed): always on SQLite (one node, whose own leases the sweep
// checks); on PostgreSQL while the lease's connection still holds its
// lock.
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
	var holds bool
	err := tx.tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.pid = $1 AND l.classid::int8 = $2 AND l.objid::int8 = $3 AND l.objsubid = 2
		AND l.mode = 'ShareLock' AND l.granted AND (extract(epoch FROM a.backend_start) * 1000000)::int8 = $4)`,
		l.pid, blobLeaseClass, l.key, l.started).Scan(&holds)
	return holds, err
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
	db.leases.mu.Lock()
	defer db.leases.mu.Unlock()
	db.leases.drop()
}
