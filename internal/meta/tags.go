package meta

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
)

// Tag is a tag's current value or tombstone.
type Tag struct {
	Repo    string
	Name    string
	Digest  digest.Digest // of the manifest; empty in a tombstone
	Version hlc.Version
	Updated time.Time
	Deleted bool
}

// SetTag points tag at d with version v unless the stored value or
// tombstone carries a later version (last-writer-wins). It reports whether
// the write won.
func (tx *Tx) SetTag(ctx context.Context, repo, name string, d digest.Digest, v hlc.Version, now time.Time) (bool, error) {
	return tx.writeTag(ctx, repo, name, d.String(), v, now, false)
}

// DeleteTag replaces tag with a tombstone at version v unless the stored
// value carries a later version. It reports whether the delete won.
func (tx *Tx) DeleteTag(ctx context.Context, repo, name string, v hlc.Version, now time.Time) (bool, error) {
	return tx.writeTag(ctx, repo, name, "", v, now, true)
}

func (tx *Tx) writeTag(ctx context.Context, repo, name, d string, v hlc.Version, now time.Time, deleted bool) (bool, error) {
	if err := tx.writes(repo); err != nil {
		return false, err
	}
	tx.summaryChanged(repo)
	del := 0
	if deleted {
		del = 1
	}
	if err := tx.recordTagMove(ctx, repo, name, d, v, now, deleted); err != nil {
		return false, err
	}
	query := `
		INSERT INTO tags (repo, name, digest, version, origin, updated_at, deleted)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (repo, name) DO UPDATE SET
			digest = excluded.digest, version = excluded.version, origin = excluded.origin,
			updated_at = excluded.updated_at, deleted = excluded.deleted
		WHERE ` + newerWins("tags")
	args := []any{repo, name, d, v.Time, v.Region, now.UnixMilli(), del}
	if tx.dialect == postgres {
		// Other nodes are told only when a row they may cache changed: a
		// new tag is in no cache (misses are not cached), so a push of a
		// new tag costs no notification and no wait (lease.go).
		var inserted bool
		err := tx.queryRow(ctx, query+` RETURNING (xmax = 0)`, args...).Scan(&inserted)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil // a later version is stored
		}
		if err != nil {
			return false, err
		}
		if !inserted {
			tx.changed(repo)
		}
		return true, nil
	}
	res, err := tx.exec(ctx, query, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// GetTag returns a live tag, or ErrNotFound (also for a tombstone).
func (db *DB) GetTag(ctx context.Context, repo, name string) (*Tag, error) {
	t, err := db.TagRecord(ctx, repo, name)
	if err != nil {
		return nil, err
	}
	if t.Deleted {
		return nil, ErrNotFound
	}
	return t, nil
}

// TagRecord returns a tag's value or tombstone, or ErrNotFound.
func (db *DB) TagRecord(ctx context.Context, repo, name string) (*Tag, error) {
	return tagRecord(ctx, db.r, repo, name)
}

func tagRecord(ctx context.Context, q queryer, repo, name string) (*Tag, error) {
	t := &Tag{Repo: repo, Name: name}
	var d string
	var updated, del int64
	err := q.QueryRowContext(ctx,
		`SELECT digest, version, origin, updated_at, deleted FROM tags WHERE repo = $1 AND name = $2`,
		repo, name).Scan(&d, &t.Version.Time, &t.Version.Region, &updated, &del)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	t.Digest = digest.Digest(d)
	t.Updated = time.UnixMilli(updated)
	t.Deleted = del != 0
	return t, nil
}

// Tags lists up to n live tag names of repo after last, in lexical order.
// A tag whose manifest was deleted (possible briefly between regions) is
// not listed: it cannot be pulled.
func (db *DB) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	rows, err := db.query(ctx, `
		SELECT t.name FROM tags t JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
		WHERE t.repo = $1 AND t.deleted = 0 AND m.deleted = 0 AND t.name > $2
		ORDER BY t.name LIMIT $3`,
		repo, last, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, rows.Err()
}

// MaxVersion returns the latest version stored anywhere in the region's
// rows (tags, manifests, blob links and tombstones, settings, soft-deleted
// copies and tag history, and the newest version its nodes recorded; not
// the feed, the largest table, whose every version is also in one of
// those rows, tombstones included), so a restarted region's clock starts past every version it
// wrote or observed before, also a peer's from a clock ahead of its own:
// a write stamped earlier than a delete it follows would lose to it in
// every region.
func (db *DB) MaxVersion(ctx context.Context) (int64, error) {
	var t sql.NullInt64
	err := db.queryRow(ctx, `SELECT MAX(v) FROM (
		SELECT MAX(version) AS v FROM tags
		UNION ALL SELECT MAX(version) FROM manifests
		UNION ALL SELECT MAX(version) FROM blobs
		UNION ALL SELECT MAX(version) FROM blob_tombstones
		UNION ALL SELECT MAX(version) FROM settings
		UNION ALL SELECT MAX(deleted_version) FROM deleted_manifests
		UNION ALL SELECT MAX(version) FROM tag_history
		UNION ALL SELECT MAX(value) FROM region_state WHERE name = 'hlc') AS every_table`).Scan(&t)
	return t.Int64, err
}
