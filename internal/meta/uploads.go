package meta

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// ErrConflict is returned when a row changed since it was read (an upload
// session another request, on this node or another, moved on).
var ErrConflict = errors.New("changed by another request since it was read")

// Upload is an open upload session. Its bytes live in the content store;
// Checkpoint is the content store's state to continue them from (any
// node), of Size bytes. Gen counts the checkpoints saved: a save names the
// generation it continues, so two requests racing on one session cannot
// both move it on.
type Upload struct {
	ID         string
	Repo       string
	Size       int64
	Checkpoint []byte
	Gen        int64
	Created    time.Time
	Updated    time.Time
}

// CreateUpload records a new session (a write of its repository).
func (db *DB) CreateUpload(ctx context.Context, u Upload) error {
	return db.UpdateRepo(ctx, u.Repo, func(tx *Tx) error {
		_, err := tx.exec(ctx,
			`INSERT INTO uploads (id, repo, size, checkpoint, gen, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, $5, $6)`,
			u.ID, u.Repo, u.Size, u.Checkpoint, u.Created.UnixMilli(), u.Updated.UnixMilli())
		return err
	})
}

// GetUpload returns a session, or ErrNotFound.
func (db *DB) GetUpload(ctx context.Context, id string) (*Upload, error) {
	u := &Upload{ID: id}
	var created, updated int64
	err := db.queryRow(ctx,
		`SELECT repo, size, checkpoint, gen, created_at, updated_at FROM uploads WHERE id = $1`, id).
		Scan(&u.Repo, &u.Size, &u.Checkpoint, &u.Gen, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	u.Created, u.Updated = time.UnixMilli(created), time.UnixMilli(updated)
	return u, nil
}

// SaveUpload records session id's new checkpoint of size bytes, moving it
// from generation gen to gen+1, and postpones its expiry. ErrConflict when
// the session is not at gen any more (another request saved first),
// ErrNotFound when it is gone. A write of repo, the session's repository.
func (db *DB) SaveUpload(ctx context.Context, repo, id string, gen, size int64, checkpoint []byte, now time.Time) error {
	return db.UpdateRepo(ctx, repo, func(tx *Tx) error {
		res, err := tx.exec(ctx, `UPDATE uploads SET size = $3, checkpoint = $4, gen = gen + 1, updated_at = $5
			WHERE id = $1 AND gen = $2`, id, gen, size, checkpoint, now.UnixMilli())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var exists int64
		if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM uploads WHERE id = $1`, id).Scan(&exists); err != nil {
			return err
		}
		if exists == 0 {
			return ErrNotFound
		}
		return ErrConflict
	})
}

// DeleteUpload forgets a session inside a transaction (completing a blob
// and forgetting its session commit together). Its row is the session's
// own, so a write of any scope may delete it.
func (tx *Tx) DeleteUpload(ctx context.Context, id string) error {
	_, err := tx.exec(ctx, `DELETE FROM uploads WHERE id = $1`, id)
	return err
}

// StaleUploads returns up to n sessions idle since before cutoff.
func (db *DB) StaleUploads(ctx context.Context, cutoff time.Time, n int) ([]string, error) {
	rows, err := db.query(ctx,
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
