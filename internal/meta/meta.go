// Package meta is the metadata store of a region: repositories, blob links,
// manifests, versioned tags with tombstones, referrers and upload sessions.
//
// One SQL schema serves SQLite (embedded, the default) and PostgreSQL:
// placeholders are $n, upserts are ON CONFLICT, and the few type names that
// differ are filled in per dialect (text compares bytewise in both: COLLATE
// "C" in PostgreSQL, so tag order and pagination are the same).
//
// Writers: SQLite writes go through a single connection, so it never has
// two writers waiting on each other; reads use a pool. SQLite runs in WAL
// mode with synchronous=FULL, so a committed transaction survives kill -9
// and power loss. PostgreSQL serves every node of a region at once; each
// write declares its scope and takes its locks (scope.go): a write of one
// repository runs beside writes of other repositories and after the
// writes of its own, a region-wide write runs alone. That keeps one
// behaviour for both: a check and the write that depends on it (every
// blob of a manifest present, a lock, a GC sweep) see no concurrent write
// of what they check, and the feed's sequence numbers commit in order
// with no gaps (numbered at commit by the feed sequencer). Reads are not
// serialized.
//
// Versions: every tag and manifest row carries the hlc.Version of its last
// write (time and origin region). Tag writes are last-writer-wins by
// version; a delete leaves a tombstone row (deleted = 1) with its version,
// so a late, older write cannot bring the tag back (DESIGN invariant 4).
// With several nodes (PostgreSQL), each write transaction moves the
// writing node's clock past the newest version any node of the region
// committed (SetClock), once it holds the locks of what it writes, so a
// later write of the same row always has a later version.
package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"github.com/georeg/georeg/internal/hlc"
)

// ErrNotFound is returned for a row that does not exist (or is a tombstone).
var ErrNotFound = errors.New("not found")

// DB is a region's metadata store. It is safe for concurrent use.
type DB struct {
	w       *sql.DB // writes: one connection (SQLite), the pool (PostgreSQL)
	r       *sql.DB // reads
	dialect dialect
	dsn     string // PostgreSQL: for the LISTEN connection
	clock   Clock  // PostgreSQL: synchronized with the other nodes' (SetClock)
	lst     *listener
	// enqueued is called after a transaction that enqueued webhook
	// deliveries committed (OnDeliveriesEnqueued).
	enqueued func()
	// Write transactions begun, and the time they waited for their turn
	// (PostgreSQL: their place in the node's queue and their locks;
	// SQLite: the one writing connection), in nanoseconds: WriteStats.
	writes, writeWaitNs atomic.Int64
	lanes               []leaderQueue[*writeReq] // writes waiting for their turn, by lane (batch.go)
	rtt                 time.Duration            // PostgreSQL: the round trip measured at open
	lanesAuto           bool                     // lanes chosen by rtt, shared among the nodes (lanesNow)
	seqMu               sync.Mutex               // a transaction's turn at the sequencer on this node (scope.go: sequence)
	// beforeSequence, set by tests only, runs as a transaction is about to
	// take the feed sequencer (end).
	beforeSequence func(*Tx)
	summaries      summaryCache
	// SQLite: statements prepared on the writing and reading pools
	// (stmts.go).
	writeStmts, readStmts statements
	// keepDeleted says whether a manifest deleted now is kept restorable
	// (softdelete.go); nil: never.
	keepDeleted func() bool
	// actorOf names who asks for the write ctx carries ("" when not a
	// client's: tag history, softdelete.go).
	actorOf func(context.Context) string
	leases  leaseConn // PostgreSQL: the connection blob leases are held on (bloblease.go)
}

// WriteStats returns how many write transactions began, and how long they
// waited in all for the write lock: what bounds a region's write capacity
// (docs/performance.md).
func (db *DB) WriteStats() (transactions int64, waited time.Duration) {
	return db.writes.Load(), time.Duration(db.writeWaitNs.Load())
}

type dialect int

const (
	sqlite dialect = iota
	postgres
)

// Clock is the clock a region's writes take versions from (hlc.Clock).
type Clock interface {
	Observe(v hlc.Version)
	Last() int64
}

// SetClock has every write transaction (PostgreSQL) first move c past the
// newest version the region's nodes committed, and record c's newest at
// commit. Call it before the store is used.
func (db *DB) SetClock(c Clock) { db.clock = c }

// OnDeliveriesEnqueued has fn called after every transaction that
// enqueued webhook deliveries (EnqueueDelivery) committed, and after no
// other: the deliverer is woken when there is something to deliver, not
// by every write. Call it before the store is used.
func (db *DB) OnDeliveriesEnqueued(fn func()) { db.enqueued = fn }

// Shared reports whether several nodes may use this store at once
// (PostgreSQL): caches and in-memory state of one node then do not see the
// others' writes.
func (db *DB) Shared() bool { return db.dialect == postgres }

const schema = `
CREATE TABLE IF NOT EXISTS repositories (
	name       TEXT PRIMARY KEY,
	created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
	repo       TEXT NOT NULL,
	digest     TEXT NOT NULL,
	size       BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS blobs_by_digest ON blobs (digest);
CREATE TABLE IF NOT EXISTS manifests (
	repo          TEXT NOT NULL,
	digest        TEXT NOT NULL,
	media_type    TEXT NOT NULL,
	size          BIGINT NOT NULL,
	payload       {{bytes}} NOT NULL,
	subject       TEXT NOT NULL DEFAULT '',
	artifact_type TEXT NOT NULL DEFAULT '',
	annotations   TEXT NOT NULL DEFAULT '',
	created_at    BIGINT NOT NULL,
	version       BIGINT NOT NULL,
	origin        TEXT NOT NULL,
	deleted       INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (repo, digest)
);
CREATE INDEX IF NOT EXISTS manifests_by_subject ON manifests (repo, subject);
CREATE TABLE IF NOT EXISTS tags (
	repo       TEXT NOT NULL,
	name       TEXT NOT NULL,
	digest     TEXT NOT NULL,
	version    BIGINT NOT NULL,
	origin     TEXT NOT NULL,
	updated_at BIGINT NOT NULL,
	deleted    INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (repo, name)
);
CREATE INDEX IF NOT EXISTS tags_by_digest ON tags (repo, digest);
CREATE TABLE IF NOT EXISTS feed (
	seq        {{serial}},
	kind       TEXT NOT NULL,
	repo       TEXT NOT NULL,
	digest     TEXT NOT NULL DEFAULT '',
	tag        TEXT NOT NULL DEFAULT '',
	media_type TEXT NOT NULL DEFAULT '',
	size       BIGINT NOT NULL DEFAULT 0,
	version    BIGINT NOT NULL,
	origin     TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS presence (
	repo       TEXT NOT NULL,
	digest     TEXT NOT NULL,
	region     TEXT NOT NULL,
	since      BIGINT NOT NULL,
	PRIMARY KEY (repo, digest, region)
);
CREATE TABLE IF NOT EXISTS settings (
	kind       TEXT NOT NULL,
	name       TEXT NOT NULL,
	value      TEXT NOT NULL,
	version    BIGINT NOT NULL,
	origin     TEXT NOT NULL,
	updated_at BIGINT NOT NULL,
	deleted    INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS peer_cursors (
	peer       TEXT PRIMARY KEY,
	seq        BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
	id          {{serial}},
	event_id    TEXT NOT NULL,
	webhook     TEXT NOT NULL,
	action      TEXT NOT NULL,
	payload     {{bytes}} NOT NULL,
	created_at  BIGINT NOT NULL,
	next_at     BIGINT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	state       TEXT NOT NULL,
	status_code INTEGER NOT NULL DEFAULT 0,
	latency_ms  BIGINT NOT NULL DEFAULT 0,
	error       TEXT NOT NULL DEFAULT '',
	updated_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, next_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_webhook ON webhook_deliveries (webhook, id);
CREATE TABLE IF NOT EXISTS everywhere_pending (
	repo       TEXT NOT NULL,
	digest     TEXT NOT NULL,
	event      {{bytes}} NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (repo, digest)
);
CREATE TABLE IF NOT EXISTS audit (
	id         {{serial}},
	at         BIGINT NOT NULL,
	actor      TEXT NOT NULL,
	action     TEXT NOT NULL,
	repo       TEXT NOT NULL DEFAULT '',
	reference  TEXT NOT NULL DEFAULT '',
	digest     TEXT NOT NULL DEFAULT '',
	client     TEXT NOT NULL DEFAULT '',
	request_id TEXT NOT NULL DEFAULT '',
	outcome    TEXT NOT NULL,
	detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at);
CREATE TABLE IF NOT EXISTS uploads (
	id         TEXT PRIMARY KEY,
	repo       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS parked (
	peer       TEXT NOT NULL,
	seq        BIGINT NOT NULL,
	record     TEXT NOT NULL,
	parked_at  BIGINT NOT NULL,
	attempts   INTEGER NOT NULL DEFAULT 0,
	next_at    BIGINT NOT NULL,
	last_error TEXT NOT NULL DEFAULT '',
	reported   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (peer, seq)
);
CREATE TABLE IF NOT EXISTS blob_tombstones (
	repo       TEXT NOT NULL,
	digest     TEXT NOT NULL,
	version    BIGINT NOT NULL,
	origin     TEXT NOT NULL,
	deleted_at BIGINT NOT NULL,
	PRIMARY KEY (repo, digest)
);
CREATE TABLE IF NOT EXISTS region_state (
	name  TEXT PRIMARY KEY,
	value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
	name    TEXT PRIMARY KEY,
	holder  TEXT NOT NULL,
	expires BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS peer_status (
	peer       TEXT PRIMARY KEY,
	node       TEXT NOT NULL,
	body       TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS import_jobs (
	id         TEXT PRIMARY KEY,
	node       TEXT NOT NULL,
	body       TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);
`

// OpenSQLite opens (creating) the SQLite database at path.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("metadata directory: %w", err)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	db := &DB{w: w, r: r, dialect: sqlite, lanes: make([]leaderQueue[*writeReq], 1)}
	if err := db.createSchema(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("create schema in %s: %w", path, err)
	}
	return db, nil
}

// OpenPostgres opens the PostgreSQL database at dsn (a URL or key=value
// string, as pgx reads it), creating the schema when it is not there. The
// database holds one region; every node of the region opens the same one.
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	pool, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	// As many idle as open: with fewer, a load of more concurrent requests
	// than idle connections closed and opened connections all the time
	// (manifest GETs at 64 clients fell to half the rate at 16).
	pool.SetMaxOpenConns(32)
	pool.SetMaxIdleConns(32)
	db := &DB{w: pool, r: pool, dialect: postgres, dsn: dsn, lst: newListener(), lanes: make([]leaderQueue[*writeReq], 1)}
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := db.createSchema(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("create schema in postgres: %w", err)
	}
	db.rtt = measureRoundTrip(ctx, pool)
	db.SetWriteLanes(lanesFor(db.rtt))
	db.lanesAuto = true // shared with the nodes it hears (lanesNow)
	return db, nil
}

var textType = regexp.MustCompile(`\bTEXT\b`)

// ddl is stmt in the store's dialect.
func (db *DB) ddl(stmt string) string {
	if db.dialect == postgres {
		stmt = textType.ReplaceAllString(stmt, `TEXT COLLATE "C"`)
		return strings.NewReplacer("{{bytes}}", "BYTEA", "{{serial}}", "BIGSERIAL PRIMARY KEY").Replace(stmt)
	}
	return strings.NewReplacer("{{bytes}}", "BLOB", "{{serial}}", "INTEGER PRIMARY KEY AUTOINCREMENT").Replace(stmt)
}

// createSchema creates what is missing and runs the migrations a store
// has not had, in one write transaction (nodes starting at once take
// turns). On PostgreSQL that transaction takes the region's lock itself
// and creates (or replaces) pgFunctions, which every write transaction
// calls.
func (db *DB) createSchema(ctx context.Context) error {
	if db.dialect != postgres {
		return db.Update(ctx, func(tx *Tx) error { return db.applySchema(ctx, tx.tx) })
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(regionLockKey)); err != nil {
		return err
	}
	if err := db.applySchema(ctx, tx); err != nil {
		return err
	}
	for _, fn := range pgFunctions {
		if _, err := tx.ExecContext(ctx, fn); err != nil {
			return fmt.Errorf("create function: %w", err)
		}
	}
	return tx.Commit()
}

// applySchema creates the tables and indexes that are missing and runs
// the migrations the store has not had, in tx.
func (db *DB) applySchema(ctx context.Context, tx *sql.Tx) error {
	for _, stmt := range strings.Split(db.ddl(schema), ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", strings.TrimSpace(stmt), err)
		}
	}
	var applied int64 // a store without the row has had none
	err := tx.QueryRowContext(ctx, `SELECT value FROM region_state WHERE name = 'schema'`).Scan(&applied)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	for i := applied; i < int64(len(migrations)); i++ {
		for _, stmt := range strings.Split(db.ddl(migrations[i]), ";") {
			if _, err := tx.ExecContext(ctx, strings.TrimSpace(stmt)); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO region_state (name, value) VALUES ('schema', $1)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, len(migrations))
	return err
}

// Close closes the database.
func (db *DB) Close() error {
	db.closeLeases()
	db.writeStmts.close()
	db.readStmts.close()
	return errors.Join(db.r.Close(), db.w.Close())
}

// Ping checks the database answers a read and a write lock.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.PingRead(ctx); err != nil {
		return err
	}
	return db.Update(ctx, func(*Tx) error { return nil })
}

// PingRead checks the database answers a read.
func (db *DB) PingRead(ctx context.Context) error {
	var one int
	return db.queryRow(ctx, "SELECT 1").Scan(&one)
}

// newerWins is the last-writer-wins rule of DESIGN invariant 4, as the
// WHERE clause of an upsert into table: the incoming row wins with a later
// version, or an equal version from a later region name. Every versioned
// table (tags, manifests, settings) uses this one rule.
func newerWins(table string) string {
	return "(excluded.version > " + table + ".version OR (excluded.version = " + table + ".version AND excluded.origin > " + table + ".origin))"
}

// Tx is a write transaction. Its methods are the only writes to the store.
type Tx struct {
	tx      *sql.Tx
	db      *DB
	dialect dialect
	// changedRepos are the repositories whose tags or manifests this
	// transaction changes (PostgreSQL: other nodes are told at commit).
	changedRepos map[string]struct{}
	ensured      map[string]int64 // repositories recorded, when (EnsureRepository)
	change       uint64           // this node's number of the change notified at commit (lease.go)
	// scope is the repository the running write may write ("": any;
	// scope.go); exclusive is set once the transaction holds the
	// region's lock exclusive, held names the repositories whose locks
	// it holds (PostgreSQL).
	scope     string
	exclusive bool
	held      map[string]bool
	busy      map[string]bool // repositories whose locks another transaction held (lockAhead)
	// settingsRead is what the transaction read of the settings, kept
	// until it writes one (settings.go).
	settingsRead settingsRead
	leasesHeld   leasesHeld            // the blob leases read held (bloblease.go)
	audits       []AuditEntry          // added, inserted at the end (audit.go)
	cursors      map[string]cursorMove // moved, written at the end (feed.go)
	enqueued     bool                  // webhook deliveries enqueued (OnDeliveriesEnqueued)
	feed         []Record              // PostgreSQL: appended, numbered at the end (sequence)
	marks        []pendingMark         // PostgreSQL: presence marks of feed records numbered at the end
	lastSeq      int64                 // SQLite: the seq of the last feed record appended
	// bound, when set, is the context every statement runs under in
	// place of the one its write passes (SQLite: batch.go).
	bound context.Context
	// summaries are the repositories whose summary this transaction
	// changes: their generations move at its end (summarytree.go).
	summaries map[string]struct{}
}

// Update runs fn in one write transaction, committed when fn returns nil.
// Everything fn writes becomes durable and visible together. A region-wide
// write runs alone (per region, across its nodes); UpdateRepo runs writes
// of different repositories at once (scope.go). Writes waiting for
// their turn share a transaction, each in a savepoint of its own
// (batch.go).
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	return db.update(ctx, "", fn)
}

// update runs fn in a write transaction of scope, batched with the writes
// waiting beside it (batch.go).
func (db *DB) update(ctx context.Context, scope string, fn func(*Tx) error) error {
	return db.updateBatched(ctx, scope, fn)
}

// begin takes the locks of the transaction's first write, waiting for
// them, and moves the clock past the region's newest version (PostgreSQL).
func (db *DB) begin(ctx context.Context, t *Tx, scope string) error {
	_, err := db.lock(ctx, t, scope, true)
	return err
}

// end tells the other nodes what changed, and numbers and inserts the
// feed records and records the clock's newest version for the next
// writer, on any node (PostgreSQL).
func (db *DB) end(ctx context.Context, t *Tx) error {
	if err := t.finish(ctx); err != nil {
		return err
	}
	if db.beforeSequence != nil {
		db.beforeSequence(t)
	}
	return db.sequence(ctx, t)
}

// RegionState returns the value of the region-wide flag name (ok false
// when it was never set).
func (db *DB) RegionState(ctx context.Context, name string) (int64, bool, error) {
	var v int64
	err := db.queryRow(ctx, `SELECT value FROM region_state WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return v, err == nil, err
}

// SetRegionState sets the region-wide flag name to v. Purge leaves these.
func (tx *Tx) SetRegionState(ctx context.Context, name string, v int64) error {
	if err := tx.writesRegion("SetRegionState"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `INSERT INTO region_state (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, v)
	return err
}

// Counts returns the number of rows in each table (tombstones included),
// for status pages and for tests that check a request changed nothing.
func (db *DB) Counts(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, table := range []string{"repositories", "blobs", "manifests", "tags", "uploads"} {
		var n int64
		if err := db.queryRow(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			return nil, err
		}
		out[table] = n
	}
	return out, nil
}

// Purge deletes every repository, blob link, manifest, tag, upload
// session, feed record, presence, cursor, setting and webhook delivery:
// the region is retired and keeps no data.
func (tx *Tx) Purge(ctx context.Context) error {
	if err := tx.writesRegion("Purge"); err != nil {
		return err
	}
	tx.changed(allRepositories)
	tx.ensured, tx.audits = nil, nil
	tx.settingsRead = settingsRead{}
	for _, table := range []string{"repositories", "blobs", "blob_tombstones", "parked", "manifests", "tags", "uploads", "feed", "presence", "peer_applied", "peer_cursors", "settings", "webhook_deliveries", "everywhere_pending", "audit", "peer_status", "import_jobs", "local_keys", "repo_gens", "traffic"} {
		if _, err := tx.exec(ctx, "DELETE FROM "+table); err != nil {
			return fmt.Errorf("purge %s: %w", table, err)
		}
	}
	return nil
}
