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
	rows, err := db.query(ctx, `SELECT kid, pem, created FROM local_keys ORDER BY created, kid`)
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

// PutLocalKey stores one of the region's own signing keys, unless the
// region has one made after since: of nodes of a region making a
// key at once (each found none), one does. It reports whether it stored
// k.
func (db *DB) PutLocalKey(ctx context.Context, k LocalKey, since time.Time) (bool, error) {
	stored := false
	err := db.Update(ctx, func(tx *Tx) error {
		var n int
		if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM local_keys WHERE created > $1`, since.UnixMilli()).Scan(&n); err != nil || n > 0 {
			return err
		}
		_, err := tx.exec(ctx, `INSERT INTO local_keys (kid, pem, created) VALUES ($1, $2, $3)`, k.Kid, k.PEM, k.Created.UnixMilli())
		stored = err == nil
		return err
	})
	return stored, err
}

// DeleteLocalKey forgets a retired signing key.
func (db *DB) DeleteLocalKey(ctx context.Context, kid string) error {
	return db.Update(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `DELETE FROM local_keys WHERE kid = $1`, kid)
		return err
	})
}
