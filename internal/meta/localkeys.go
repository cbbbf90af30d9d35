package meta

import (
	"context"
	"time"
)

// LocalKey is one of a region's own private token-signing keys.
type LocalKey struct {
	Kid     string
	PEM     string // PKCS#8
	Created time.Time
}

// LocalKeys returns the region's own signing keys, oldest first.
func (db *DB) LocalKeys(ctx context.Context) ([]LocalKey, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT kid, pem, created FROM local_keys ORDER BY created, kid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []LocalKey
	for rows.Next() {
		var k LocalKey
		var created int64
		if err := rows.Scan(&k.Kid, &k.PEM, &created); err != nil {
			return nil, err
		}
		k.Created = time.UnixMilli(created).UTC()
		out = append(out, k)
	}
	return out, rows.Err()
}

// PutLocalKey stores one of the region's own signing keys.
func (db *DB) PutLocalKey(ctx context.Context, k LocalKey) error {
	return db.Update(ctx, func(tx *Tx) error {
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO local_keys (kid, pem, created) VALUES ($1, $2, $3)`, k.Kid, k.PEM, k.Created.UnixMilli())
		return err
	})
}

// DeleteLocalKey forgets a retired signing key.
func (db *DB) DeleteLocalKey(ctx context.Context, kid string) error {
	return db.Update(ctx, func(tx *Tx) error {
		_, err := tx.tx.ExecContext(ctx, `DELETE FROM local_keys WHERE kid = $1`, kid)
		return err
	})
}
