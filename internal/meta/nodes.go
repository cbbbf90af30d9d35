package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The work a region's nodes share: leases that give one node at a time a
// job (following one peer, garbage collection, ...), what each node
// publishes of the jobs it holds (a peer's replication progress, an
// import's), and, with PostgreSQL, notifications that wake other nodes
// when the feed grows.

// AcquireLease takes (or renews) lease name for holder until now+ttl. It
// reports false when another holder has it and its time has not run out.
// A holder that restarts under the same name takes its lease back at once.
func (db *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error) {
	var got bool
	err := db.update(ctx, scopeJobLeases, func(tx *Tx) error {
		res, err := tx.exec(ctx, `
			INSERT INTO leases (name, holder, expires) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
			WHERE leases.holder = excluded.holder OR leases.expires < $4`,
			name, holder, now.Add(ttl).UnixMilli(), now.UnixMilli())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		got = n == 1
		return err
	})
	return got, err
}

// ReleaseLease gives lease name up, if holder has it.
func (db *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	return db.update(ctx, scopeJobLeases, func(tx *Tx) error {
		_, err := tx.exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder)
		return err
	})
}

// Published is a row a node publishes about a job it holds: its body is
// the job's state as JSON.
type Published struct {
	Key     string
	Node    string
	Body    string
	Updated time.Time
}

// publishedTables are the tables Publish and Published read and write.
var publishedTables = map[string]string{"peer_status": "peer", "import_jobs": "id"}

// Publish records body as the state of key in table (peer_status or
// import_jobs), as written by node.
func (db *DB) Publish(ctx context.Context, table, key, node, body string, now time.Time) error {
	col, ok := publishedTables[table]
	if !ok {
		return fmt.Errorf("publish: no table %q", table)
	}
	return db.update(ctx, scopePublished, func(tx *Tx) error {
		_, err := tx.exec(ctx, `INSERT INTO `+table+` (`+col+`, node, body, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (`+col+`) DO UPDATE SET node = excluded.node, body = excluded.body, updated_at = excluded.updated_at`,
			key, node, body, now.UnixMilli())
		return err
	})
}

// Published returns the row of key in table, or ErrNotFound.
func (db *DB) Published(ctx context.Context, table, key string) (*Published, error) {
	col, ok := publishedTables[table]
	if !ok {
		return nil, fmt.Errorf("published: no table %q", table)
	}
	p := &Published{Key: key}
	var updated int64
	err := db.queryRow(ctx, `SELECT node, body, updated_at FROM `+table+` WHERE `+col+` = $1`, key).
		Scan(&p.Node, &p.Body, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	p.Updated = time.UnixMilli(updated)
	return p, err
}

// PruneImportJobs forgets import jobs last published before cutoff.
func (db *DB) PruneImportJobs(ctx context.Context, cutoff time.Time) error {
	return db.Update(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `DELETE FROM import_jobs WHERE updated_at < $1`, cutoff.UnixMilli())
		return err
	})
}

// feedChannel is the PostgreSQL notification channel of feed appends.
const feedChannel = "georeg_feed"
