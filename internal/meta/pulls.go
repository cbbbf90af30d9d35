package meta

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"
)

// NotePulled records that repo's manifest d was pulled at (to the
// second; a later time than the one recorded moves it, an earlier one
// does not). A write of the traffic scope (UpdateTraffic) or region-wide.
func (tx *Tx) NotePulled(ctx context.Context, repo string, d digest.Digest, at time.Time) error {
	if err := tx.writesBookkeeping(scopeTraffic, "NotePulled"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `INSERT INTO pulls (repo, digest, pulled_at) VALUES ($1, $2, $3)
		ON CONFLICT (repo, digest) DO UPDATE SET pulled_at = CASE WHEN excluded.pulled_at > pulls.pulled_at THEN excluded.pulled_at ELSE pulls.pulled_at END`,
		repo, d.String(), at.Unix())
	return err
}

// ForgetPulled drops repo's record of manifest d (evicted).
func (tx *Tx) ForgetPulled(ctx context.Context, repo string, d digest.Digest) error {
	if err := tx.writesBookkeeping(scopeTraffic, "ForgetPulled"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM pulls WHERE repo = $1 AND digest = $2`, repo, d.String())
	return err
}

// LastPulled returns, for each manifest of repo pulled here, its last
// recorded pull (to the second).
func (db *DB) LastPulled(ctx context.Context, repo string) (map[digest.Digest]time.Time, error) {
	rows, err := db.query(ctx, `SELECT digest, pulled_at FROM pulls WHERE repo = $1`, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[digest.Digest]time.Time{}
	for rows.Next() {
		var d string
		var at int64
		if err := rows.Scan(&d, &at); err != nil {
			return nil, err
		}
		out[digest.Digest(d)] = time.Unix(at, 0).UTC()
	}
	return out, rows.Err()
}
