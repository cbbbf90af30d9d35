package meta

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
)

// LinkBlob records that repo holds blob d of size bytes, idempotently,
// and dates the link now (also when it existed: garbage collection
// spares links younger than its grace period, and a blob pushed again is
// on its way to a manifest). The bytes themselves live in the content
// store and must be committed first.
func (tx *Tx) LinkBlob(ctx context.Context, repo string, d digest.Digest, size int64, now time.Time) error {
	if err := tx.EnsureRepository(ctx, repo, now); err != nil {
		return err
	}
	_, err := tx.tx.ExecContext(ctx,
		`INSERT INTO blobs (repo, digest, size, created_at) VALUES ($1, $2, $3, $4)
		 ON CONFLICT (repo, digest) DO UPDATE SET created_at = excluded.created_at`,
		repo, d.String(), size, now.UnixMilli())
	return err
}

// UnlinkBlob removes repo's link to d; it reports whether there was one.
func (tx *Tx) UnlinkBlob(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	res, err := tx.tx.ExecContext(ctx, `DELETE FROM blobs WHERE repo = $1 AND digest = $2`, repo, d.String())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// BlobLinked returns when repo's link to d was made (or last dated anew),
// or ErrNotFound.
func (db *DB) BlobLinked(ctx context.Context, repo string, d digest.Digest) (time.Time, error) {
	var at int64
	err := db.r.QueryRowContext(ctx,
		`SELECT created_at FROM blobs WHERE repo = $1 AND digest = $2`, repo, d.String()).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, ErrNotFound
	}
	return time.UnixMilli(at), err
}

// TouchBlob dates repo's link to d anew, when there is one.
func (tx *Tx) TouchBlob(ctx context.Context, repo string, d digest.Digest, now time.Time) error {
	_, err := tx.tx.ExecContext(ctx, `UPDATE blobs SET created_at = $3 WHERE repo = $1 AND digest = $2`,
		repo, d.String(), now.UnixMilli())
	return err
}

// BlobSize returns the size of blob d linked in repo, or ErrNotFound.
func (db *DB) BlobSize(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	var size int64
	err := db.r.QueryRowContext(ctx,
		`SELECT size FROM blobs WHERE repo = $1 AND digest = $2`, repo, d.String()).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return size, err
}

// BlobSizes returns the sizes of those of ds linked in repo; a digest
// missing from the result is not linked.
func (tx *Tx) BlobSizes(ctx context.Context, repo string, ds []digest.Digest) (map[digest.Digest]int64, error) {
	out := make(map[digest.Digest]int64, len(ds))
	for _, d := range ds {
		var size int64
		err := tx.tx.QueryRowContext(ctx,
			`SELECT size FROM blobs WHERE repo = $1 AND digest = $2`, repo, d.String()).Scan(&size)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return nil, err
		default:
			out[d] = size
		}
	}
	return out, nil
}

// RepositoryWithBlob returns a repository holding blob d, preferring
// prefer, or ErrNotFound. Cross-repository mounts use it.
func (db *DB) RepositoryWithBlob(ctx context.Context, d digest.Digest, prefer string) (string, int64, error) {
	var repo string
	var size int64
	err := db.r.QueryRowContext(ctx,
		`SELECT repo, size FROM blobs WHERE digest = $1 ORDER BY CASE WHEN repo = $2 THEN 0 ELSE 1 END LIMIT 1`,
		d.String(), prefer).Scan(&repo, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, ErrNotFound
	}
	return repo, size, err
}
