package meta

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
)

// LinkBlob records that repo holds blob d of size bytes, idempotently,
// and dates the link now (also when it existed: garbage collection
// spares links younger than its grace period, and a blob pushed again is
// on its way to a manifest). The link's version becomes v when v is newer
// than the one it had (a zero v, for a blob linked because a manifest
// needs it or a client read it through, keeps it). Whether a blob
// tombstone allows the link is the caller's decision (region). The bytes
// themselves live in the content store and must be committed first.
func (tx *Tx) LinkBlob(ctx context.Context, repo string, d digest.Digest, size int64, v hlc.Version, now time.Time) error {
	if err := tx.writes(repo); err != nil {
		return err
	}
	if err := tx.EnsureRepository(ctx, repo, now); err != nil {
		return err
	}
	_, err := tx.exec(ctx,
		`INSERT INTO blobs (repo, digest, size, created_at, version, origin) VALUES ($1, $2, $3, $4, $5, $6)
		 ON CONFLICT (repo, digest) DO UPDATE SET created_at = excluded.created_at,
			version = CASE WHEN `+newerWins("blobs")+` THEN excluded.version ELSE blobs.version END,
			origin = CASE WHEN `+newerWins("blobs")+` THEN excluded.origin ELSE blobs.origin END`,
		repo, d.String(), size, now.UnixMilli(), v.Time, v.Region)
	return err
}

// UnlinkBlob removes repo's link to d; it reports whether there was one.
// It leaves no tombstone: garbage collection unlinks with it, and what
// one region collects is not deleted registry-wide (TombstoneBlob is).
func (tx *Tx) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	if err := tx.writes(repo); err != nil {
		return false, err
	}
	res, err := tx.exec(ctx, `DELETE FROM blobs WHERE repo = $1 AND digest = $2`, repo, d.String())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// LinksOlderThanTheirDeletes lists the blobs repo links although a
// delete of them at least as new as the link is known here (a link the
// tombstone's last-writer-wins has not taken away, as loading a peer's
// snapshot over rows of this region's own can leave): the caller
// unlinks those no live manifest uses, as ApplyBlobDelete would.
func (tx *Tx) LinksOlderThanTheirDeletes(ctx context.Context, repo string) ([]digest.Digest, error) {
	rows, err := tx.tx.QueryContext(tx.ctx(ctx), `
		SELECT b.digest FROM blobs b JOIN blob_tombstones t ON t.repo = b.repo AND t.digest = b.digest
		WHERE b.repo = $1 AND (t.version > b.version OR (t.version = b.version AND t.origin >= b.origin))
		ORDER BY b.digest`, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []digest.Digest
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, digest.Digest(s))
	}
	return out, rows.Err()
}

// BlobLinkVersion returns the version of repo's link to d (zero for a
// link made for a manifest or a read-through), or ErrNotFound when repo
// does not link d.
func (tx *Tx) BlobLinkVersion(ctx context.Context, repo string, d digest.Digest) (hlc.Version, error) {
	return blobLinkVersion(ctx, tx.tx, repo, d)
}

// BlobLinkVersion is Tx.BlobLinkVersion outside a transaction.
func (db *DB) BlobLinkVersion(ctx context.Context, repo string, d digest.Digest) (hlc.Version, error) {
	return blobLinkVersion(ctx, db.r, repo, d)
}

func blobLinkVersion(ctx context.Context, q queryer, repo string, d digest.Digest) (hlc.Version, error) {
	var v hlc.Version
	err := q.QueryRowContext(ctx, `SELECT version, origin FROM blobs WHERE repo = $1 AND digest = $2`,
		repo, d.String()).Scan(&v.Time, &v.Region)
	if errors.Is(err, sql.ErrNoRows) {
		return v, ErrNotFound
	}
	return v, err
}

// TombstoneBlob records that blob d was deleted from repo at version v.
// The row keeps the newest version of every delete of d from repo it was
// given (so every region ends with the same tombstones, whatever order
// deletes arrive in); it is not removed by a later link, which wins by
// its own newer version. Whether the link goes too is the caller's
// decision. It reports whether the row changed.
func (tx *Tx) TombstoneBlob(ctx context.Context, repo string, d digest.Digest, v hlc.Version, now time.Time) (bool, error) {
	if err := tx.writes(repo); err != nil {
		return false, err
	}
	tx.summaryChanged(repo)
	if err := tx.EnsureRepository(ctx, repo, now); err != nil {
		return false, err
	}
	res, err := tx.exec(ctx, `
		INSERT INTO blob_tombstones (repo, digest, version, origin, deleted_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (repo, digest) DO UPDATE SET version = excluded.version, origin = excluded.origin,
			deleted_at = excluded.deleted_at
		WHERE `+newerWins("blob_tombstones"),
		repo, d.String(), v.Time, v.Region, now.UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// BlobTombstone returns the version of the newest delete of blob d from
// repo, or ErrNotFound when it was never deleted.
func (db *DB) BlobTombstone(ctx context.Context, repo string, d digest.Digest) (hlc.Version, error) {
	return blobTombstone(ctx, db.r, repo, d)
}

// BlobTombstone is DB.BlobTombstone inside the transaction.
func (tx *Tx) BlobTombstone(ctx context.Context, repo string, d digest.Digest) (hlc.Version, error) {
	return blobTombstone(ctx, tx.tx, repo, d)
}

func blobTombstone(ctx context.Context, q queryer, repo string, d digest.Digest) (hlc.Version, error) {
	var v hlc.Version
	err := q.QueryRowContext(ctx, `SELECT version, origin FROM blob_tombstones WHERE repo = $1 AND digest = $2`,
		repo, d.String()).Scan(&v.Time, &v.Region)
	if errors.Is(err, sql.ErrNoRows) {
		return v, ErrNotFound
	}
	return v, err
}

// BlobLinked returns when repo's link to d was made (or last dated anew),
// or ErrNotFound.
func (db *DB) BlobLinked(ctx context.Context, repo string, d digest.Digest) (time.Time, error) {
	var at int64
	err := db.queryRow(ctx,
		`SELECT created_at FROM blobs WHERE repo = $1 AND digest = $2`, repo, d.String()).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, ErrNotFound
	}
	return time.UnixMilli(at), err
}

// TouchBlob dates repo's link to d anew, when there is one.
func (tx *Tx) TouchBlob(ctx context.Context, repo string, d digest.Digest, now time.Time) error {
	if err := tx.writes(repo); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `UPDATE blobs SET created_at = $3 WHERE repo = $1 AND digest = $2`,
		repo, d.String(), now.UnixMilli())
	return err
}

// BlobSize returns the size of blob d linked in repo, or ErrNotFound.
func (db *DB) BlobSize(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	var size int64
	err := db.queryRow(ctx,
		`SELECT size FROM blobs WHERE repo = $1 AND digest = $2`, repo, d.String()).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return size, err
}

// BlobSizes returns the sizes of those of ds linked in repo; a digest
// missing from the result is not linked. One query for all of them.
func (tx *Tx) BlobSizes(ctx context.Context, repo string, ds []digest.Digest) (map[digest.Digest]int64, error) {
	out := make(map[digest.Digest]int64, len(ds))
	if len(ds) == 0 {
		return out, nil
	}
	in, list := tx.digestIn(ds)
	rows, err := tx.query(ctx, `SELECT digest, size FROM blobs WHERE repo = $1 AND digest IN `+in, repo, list)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		var size int64
		if err := rows.Scan(&d, &size); err != nil {
			return nil, err
		}
		out[digest.Digest(d)] = size
	}
	return out, rows.Err()
}

// digestIn renders ds as the second argument of a query ($2) that a
// column is IN: on PostgreSQL an array, on SQLite a JSON array (one
// statement whatever the number of digests, so one prepared statement).
func (tx *Tx) digestIn(ds []digest.Digest) (in string, list any) {
	strs := make([]string, len(ds))
	for i, d := range ds {
		strs[i] = d.String()
	}
	if tx.dialect == postgres {
		return `(SELECT unnest($2::text[]))`, strs
	}
	b, _ := json.Marshal(strs)
	return `(SELECT value FROM json_each($2))`, string(b)
}

// RepositoryWithBlob returns a repository holding blob d, preferring
// prefer, or ErrNotFound. Cross-repository mounts use it.
func (db *DB) RepositoryWithBlob(ctx context.Context, d digest.Digest, prefer string) (string, int64, error) {
	var repo string
	var size int64
	err := db.queryRow(ctx,
		`SELECT repo, size FROM blobs WHERE digest = $1 ORDER BY CASE WHEN repo = $2 THEN 0 ELSE 1 END LIMIT 1`,
		d.String(), prefer).Scan(&repo, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, ErrNotFound
	}
	return repo, size, err
}
