package meta

import (
	"context"
	"time"
)

// DataKey is one of a region's data keys for encryption at rest, as
// stored: wrapped by the key service's key-encryption key KEKID.
type DataKey struct {
	ID      string
	Wrapped []byte
	KEKID   string
	Created time.Time
}

// DataKeys returns the region's data keys, oldest first: the last is
// current.
func (db *DB) DataKeys(ctx context.Context) ([]DataKey, error) {
	rows, err := db.query(ctx, `SELECT id, wrapped, kek_id, created_at FROM data_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DataKey
	for rows.Next() {
		var k DataKey
		var created int64
		if err := rows.Scan(&k.ID, &k.Wrapped, &k.KEKID, &created); err != nil {
			return nil, err
		}
		k.Created = time.UnixMilli(created).UTC()
		out = append(out, k)
	}
	return out, rows.Err()
}

// PutDataKey stores a new data key, unless one was made after since (two
// nodes making the first key at once: one is stored, both then read it).
// It reports whether k was stored.
func (db *DB) PutDataKey(ctx context.Context, k DataKey, since time.Time) (bool, error) {
	stored := false
	err := db.Update(ctx, func(tx *Tx) error {
		var n int
		if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM data_keys WHERE created_at > $1`, since.UnixMilli()).Scan(&n); err != nil || n > 0 {
			return err
		}
		_, err := tx.exec(ctx, `INSERT INTO data_keys (id, wrapped, kek_id, created_at) VALUES ($1, $2, $3, $4)`,
			k.ID, k.Wrapped, k.KEKID, k.Created.UnixMilli())
		stored = err == nil
		return err
	})
	return stored, err
}

// RewrapDataKey replaces data key id's wrapped form (a rotation of the
// key-encryption key), if it is still wrapped by oldKEK.
func (db *DB) RewrapDataKey(ctx context.Context, id, oldKEK string, wrapped []byte, kek string) (bool, error) {
	done := false
	err := db.Update(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `UPDATE data_keys SET wrapped = $1, kek_id = $2 WHERE id = $3 AND kek_id = $4`, wrapped, kek, id, oldKEK)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		done = n == 1
		return err
	})
	return done, err
}
