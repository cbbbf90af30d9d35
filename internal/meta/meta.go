// Package meta is the metadata store of a region: repositories, blob links,
// manifests, versioned tags with tombstones, referrers and upload sessions.
//
// One SQL schema serves SQLite (embedded, the default) and PostgreSQL:
// placeholders are $n, upserts are ON CONFLICT, and the few type names that
// differ are filled in per dialect. Writes go through a single connection
// so SQLite never has two writers waiting on each other; reads use a pool.
// SQLite runs in WAL mode with synchronous=FULL, so a committed transaction
// survives kill -9 and power loss.
//
// Versions: every tag and manifest row carries the hlc.Version of its last
// write (time and origin region). Tag writes are last-writer-wins by
// version; a delete leaves a tombstone row (deleted = 1) with its version,
// so a late, older write cannot bring the tag back (DESIGN invariant 4).
package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNotFound is returned for a row that does not exist (or is a tombstone).
var ErrNotFound = errors.New("not found")

// DB is a region's metadata store. It is safe for concurrent use.
type DB struct {
	w *sql.DB // one connection: all writes
	r *sql.DB // reads
}

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
	db := &DB{w: w, r: r}
	ddl := strings.NewReplacer("{{bytes}}", "BLOB", "{{serial}}", "INTEGER PRIMARY KEY AUTOINCREMENT").Replace(schema)
	if _, err := w.ExecContext(ctx, ddl); err != nil {
		db.Close()
		return nil, fmt.Errorf("create schema in %s: %w", path, err)
	}
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error {
	return errors.Join(db.r.Close(), db.w.Close())
}

// Ping checks the database answers a read and a write lock.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	return db.Update(ctx, func(*Tx) error { return nil })
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
	tx *sql.Tx
}

// Update runs fn in one write transaction, committed when fn returns nil.
// Everything fn writes becomes durable and visible together.
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(&Tx{tx: tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Counts returns the number of rows in each table (tombstones included),
// for status pages and for tests that check a request changed nothing.
func (db *DB) Counts(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, table := range []string{"repositories", "blobs", "manifests", "tags", "uploads"} {
		var n int64
		if err := db.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
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
	for _, table := range []string{"repositories", "blobs", "manifests", "tags", "uploads", "feed", "presence", "peer_cursors", "settings", "webhook_deliveries", "everywhere_pending", "audit"} {
		if _, err := tx.tx.ExecContext(ctx, "DELETE FROM "+table); err != nil {
			return fmt.Errorf("purge %s: %w", table, err)
		}
	}
	return nil
}
