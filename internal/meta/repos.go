package meta

import (
	"context"
	"fmt"
	"time"
)

// EnsureRepository records a repository, idempotently. The row is
// inserted at the transaction's end (recordRepositories), once for every
// repository its writes recorded: the table is only read outside write
// transactions, and only a purge deletes from it (Purge drops what is
// still to be recorded). A write rolled back to its savepoint forgets
// what it recorded (batch.go).
func (tx *Tx) EnsureRepository(ctx context.Context, name string, now time.Time) error {
	if err := tx.writes(name); err != nil {
		return err
	}
	if _, ok := tx.ensured[name]; ok {
		return nil
	}
	if tx.ensured == nil {
		tx.ensured = map[string]int64{}
	}
	tx.ensured[name] = now.UnixMilli()
	return nil
}

// recordRepositories inserts the repositories the transaction's writes
// recorded (EnsureRepository), at its end: on PostgreSQL in one
// statement, one round trip for a whole batch of writes.
func (tx *Tx) recordRepositories(ctx context.Context) error {
	if len(tx.ensured) == 0 {
		return nil
	}
	if tx.dialect == postgres {
		names, created := make([]string, 0, len(tx.ensured)), make([]int64, 0, len(tx.ensured))
		for name, at := range tx.ensured {
			names, created = append(names, name), append(created, at)
		}
		_, err := tx.exec(ctx, `INSERT INTO repositories (name, created_at)
			SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT (name) DO NOTHING`, names, created)
		if err != nil {
			return fmt.Errorf("record repositories: %w", err)
		}
		tx.ensured = nil
		return nil
	}
	for name, at := range tx.ensured {
		if _, err := tx.exec(ctx,
			`INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			name, at); err != nil {
			return fmt.Errorf("record repositories: %w", err)
		}
	}
	tx.ensured = nil
	return nil
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
