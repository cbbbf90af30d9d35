package meta

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Upload is an open upload session. Its bytes live in the content store.
type Upload struct {
	ID      string
	Repo    string
	Created time.Time
	Updated time.Time
}

// CreateUpload records a new session.
func (db *DB) CreateUpload(ctx context.Context, u Upload) error {
	return db.Update(ctx, func(tx *Tx) error {
		_, err := tx.tx.ExecContext(ctx,
			`INSERT INTO uploads (id, repo, created_at, updated_at) VALUES ($1, $2, $3, $4)`,
			u.ID, u.Repo, u.Created.UnixMilli(), u.Updated.UnixMilli())
		return err
	})
}

// GetUpload returns a session, or ErrNotFound.
func (db *DB) GetUpload(ctx context.Context, id string) (*Upload, error) {
	u := &Upload{ID: id}
	var created, updated int64
	err := db.r.QueryRowContext(ctx,
		`SELECT repo, created_at, updated_at FROM uploads WHERE id = $1`, id).Scan(&u.Repo, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	u.Created, u.Updated = time.UnixMilli(created), time.UnixMilli(updated)
	return u, nil
}

// TouchUpload records activity on a session, postponing its expiry.
func (db *DB) TouchUpload(ctx context.Context, id string, now time.Time) error {
	return db.Update(ctx, func(tx *Tx) error {
		_, err := tx.tx.ExecContext(ctx, `UPDATE uploads SET updated_at = $2 WHERE id = $1`, id, now.UnixMilli())
		return err
	})
}

// DeleteUpload forgets a session inside a transaction (completing a blob
// and forgetting its session commit together).
func (tx *Tx) DeleteUpload(ctx context.Context, id string) error {
	_, err := tx.tx.ExecContext(ctx, `DELETE FROM uploads WHERE id = $1`, id)
	return err
}

// StaleUploads returns up to n sessions idle since before cutoff.
func (db *DB) StaleUploads(ctx context.Context, cutoff time.Time, n int) ([]string, error) {
	rows, err := db.r.QueryContext(ctx,
		`SELECT id FROM uploads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2`, cutoff.UnixMilli(), n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
