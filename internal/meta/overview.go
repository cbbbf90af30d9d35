package meta

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"
)

// TagRow is a live tag with the time it last changed here.
type TagRow struct {
	Repo    string
	Name    string
	Digest  digest.Digest
	Updated time.Time
}

// RecentTags returns the n live tags (of live manifests) that changed
// last, newest first.
func (db *DB) RecentTags(ctx context.Context, n int) ([]TagRow, error) {
	rows, err := db.query(ctx, `
		SELECT t.repo, t.name, t.digest, t.updated_at FROM tags t
		JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
		WHERE t.deleted = 0 AND m.deleted = 0 ORDER BY t.updated_at DESC, t.repo, t.name LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TagRow
	for rows.Next() {
		var t TagRow
		var d string
		var at int64
		if err := rows.Scan(&t.Repo, &t.Name, &d, &at); err != nil {
			return nil, err
		}
		t.Digest, t.Updated = digest.Digest(d), time.UnixMilli(at)
		out = append(out, t)
	}
	return out, rows.Err()
}

// RepoCount is a repository and how many live tags it has.
type RepoCount struct {
	Repo string `json:"name"`
	Tags int    `json:"tags"`
}

// TagCounts returns up to n repositories by name with their live tags.
func (db *DB) TagCounts(ctx context.Context, n int) ([]RepoCount, error) {
	rows, err := db.query(ctx, `
		SELECT r.name, COUNT(t.name) FROM repositories r
		LEFT JOIN tags t ON t.repo = r.name AND t.deleted = 0
		GROUP BY r.name ORDER BY r.name LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RepoCount
	for rows.Next() {
		var c RepoCount
		if err := rows.Scan(&c.Repo, &c.Tags); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
