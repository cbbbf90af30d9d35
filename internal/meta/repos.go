package meta

import (
	"context"
	"time"
)

// EnsureRepository records a repository, idempotently: once per
// transaction (a write calls it for each row it adds; every statement
// under the region's write lock counts, docs/performance.md).
func (tx *Tx) EnsureRepository(ctx context.Context, name string, now time.Time) error {
	if err := tx.writes(name); err != nil {
		return err
	}
	if _, ok := tx.ensured[name]; ok {
		return nil
	}
	_, err := tx.exec(ctx,
		`INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
		name, now.UnixMilli())
	if err == nil {
		if tx.ensured == nil {
			tx.ensured = map[string]struct{}{}
		}
		tx.ensured[name] = struct{}{}
	}
	return err
}

// RepositoryExists reports whether name was ever pushed to.
func (db *DB) RepositoryExists(ctx context.Context, name string) (bool, error) {
	var n int
	err := db.queryRow(ctx, `SELECT COUNT(*) FROM repositories WHERE name = $1`, name).Scan(&n)
	return n > 0, err
}

// Repositories lists up to n repository names after last, in lexical order.
func (db *DB) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	rows, err := db.query(ctx,
		`SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2`, last, n)
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
