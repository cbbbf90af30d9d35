package meta

import (
	"context"
	"fmt"
)

// Usage is what a region's metadata says it stores.
type Usage struct {
	// StoredBytes counts each blob once, however many repositories link
	// it (what the content store holds for them); LogicalBytes counts
	// each link, as if nothing were shared.
	StoredBytes  int64 `json:"storedBytes"`
	LogicalBytes int64 `json:"logicalBytes"`
	Blobs        int64 `json:"blobs"` // distinct blobs linked
	// Manifests and ManifestBytes: live manifests (kept in the metadata
	// store, not among the blobs).
	Manifests     int64 `json:"manifests"`
	ManifestBytes int64 `json:"manifestBytes"`
	Repositories  int64 `json:"repositories"`
	// RestorableManifests are kept by soft delete; HeldBytes are the
	// bytes of the blobs they reference (each once): at most what
	// purging them would free, since live manifests may share blobs.
	// Filled by region.Region.Usage.
	RestorableManifests int64 `json:"restorableManifests"`
	HeldBytes           int64 `json:"heldBytes"`
}

// RepoUsage is what one repository holds in a region.
type RepoUsage struct {
	Repository    string `json:"repository"`
	LogicalBytes  int64  `json:"logicalBytes"` // its blobs, each once
	Blobs         int64  `json:"blobs"`
	Manifests     int64  `json:"manifests"`
	ManifestBytes int64  `json:"manifestBytes"`
	Tags          int64  `json:"tags"`
}

// Usage adds up the region's blob links, live manifests and
// repositories. It reads every link (an administrator's question, not a
// request path's).
func (db *DB) Usage(ctx context.Context) (Usage, error) {
	var u Usage
	err := db.queryRow(ctx, `SELECT COALESCE(SUM(size), 0), COUNT(*) FROM (SELECT MAX(size) AS size FROM blobs GROUP BY digest) AS b`).
		Scan(&u.StoredBytes, &u.Blobs)
	if err == nil {
		err = db.queryRow(ctx, `SELECT COALESCE(SUM(size), 0) FROM blobs`).Scan(&u.LogicalBytes)
	}
	if err == nil {
		err = db.queryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(size), 0) FROM manifests WHERE deleted = 0`).Scan(&u.Manifests, &u.ManifestBytes)
	}
	if err == nil {
		err = db.queryRow(ctx, `SELECT COUNT(*) FROM repositories`).Scan(&u.Repositories)
	}
	return u, err
}

// RepoUsage returns what repository repo holds here (zero counts when it
// holds nothing).
func (db *DB) RepoUsage(ctx context.Context, repo string) (RepoUsage, error) {
	u := RepoUsage{Repository: repo}
	err := db.queryRow(ctx, `SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blobs WHERE repo = $1`, repo).Scan(&u.LogicalBytes, &u.Blobs)
	if err == nil {
		err = db.queryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(size), 0) FROM manifests WHERE repo = $1 AND deleted = 0`, repo).Scan(&u.Manifests, &u.ManifestBytes)
	}
	if err == nil {
		err = db.queryRow(ctx, `SELECT COUNT(*) FROM tags WHERE repo = $1 AND deleted = 0`, repo).Scan(&u.Tags)
	}
	return u, err
}

// TopRepositories returns the n repositories that link the most blob
// bytes here, largest first (ties by name).
func (db *DB) TopRepositories(ctx context.Context, n int) ([]RepoUsage, error) {
	rows, err := db.query(ctx, `SELECT repo FROM blobs GROUP BY repo ORDER BY SUM(size) DESC, repo LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	var repos []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return nil, err
		}
		repos = append(repos, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]RepoUsage, 0, len(repos))
	for _, r := range repos {
		u, err := db.RepoUsage(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// RepoBytes is what counts against repository repo's quota here: its
// blobs' bytes, each once, and its live manifests' bytes. It reads repo's
// links in tx (under repo's lock: no push of repo moves it meanwhile).
func (tx *Tx) RepoBytes(ctx context.Context, repo string) (int64, error) {
	var blobs, manifests int64
	err := tx.queryRow(ctx, `SELECT COALESCE(SUM(size), 0) FROM blobs WHERE repo = $1`, repo).Scan(&blobs)
	if err == nil {
		err = tx.queryRow(ctx, `SELECT COALESCE(SUM(size), 0) FROM manifests WHERE repo = $1 AND deleted = 0`, repo).Scan(&manifests)
	}
	return blobs + manifests, err
}

// StoredBytes is what counts against the registry's quota in this
// region: its blobs' bytes, each once however many repositories link
// it, and its live manifests' bytes. It reads every link.
func (db *DB) StoredBytes(ctx context.Context) (int64, error) {
	var blobs, manifests int64
	err := db.queryRow(ctx, `SELECT COALESCE(SUM(size), 0) FROM (SELECT MAX(size) AS size FROM blobs GROUP BY digest) AS b`).Scan(&blobs)
	if err == nil {
		err = db.queryRow(ctx, `SELECT COALESCE(SUM(size), 0) FROM manifests WHERE deleted = 0`).Scan(&manifests)
	}
	return blobs + manifests, err
}

// TableBytes is the storage a table of this store takes, its indexes
// included (SQLite: its pages, by dbstat; PostgreSQL:
// pg_total_relation_size): for figures such as tag history's cost.
func (db *DB) TableBytes(ctx context.Context, table string) (int64, error) {
	switch table {
	case "tag_history", "deleted_manifests", "feed", "tags", "manifests", "blobs":
	default:
		return 0, fmt.Errorf("table %q: not one whose size is reported", table)
	}
	var n int64
	if db.dialect == postgres {
		err := db.queryRow(ctx, `SELECT pg_total_relation_size($1::regclass)`, table).Scan(&n)
		return n, err
	}
	err := db.queryRow(ctx, `SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = $1 OR name IN (SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1)`, table).Scan(&n)
	return n, err
}
