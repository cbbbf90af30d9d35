package meta

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
)

// TagEntry is a tag's value or tombstone, as anti-entropy compares it.
type TagEntry struct {
	Name    string        `json:"name"`
	Digest  digest.Digest `json:"digest,omitempty"`
	Version hlc.Version   `json:"-"`
	Deleted bool          `json:"deleted,omitempty"`
}

// ManifestEntry is a manifest or its tombstone, as anti-entropy compares
// it.
type ManifestEntry struct {
	Digest  digest.Digest `json:"digest"`
	Version hlc.Version   `json:"-"`
	Deleted bool          `json:"deleted,omitempty"`
}

// The summary of a repository hashes these lines, sorted: a tag with its
// value and version (tombstones too), and a manifest by digest when live
// (content is immutable; a live manifest's version differs between regions
// when one borrowed it by read-through) or with its version when a
// tombstone.
func tagLine(w io.Writer, t TagEntry) {
	fmt.Fprintf(w, "t %s %s %s %t\n", t.Name, t.Digest, t.Version, t.Deleted)
}

func manifestLine(w io.Writer, m ManifestEntry) {
	if m.Deleted {
		fmt.Fprintf(w, "m %s deleted %s\n", m.Digest, m.Version)
		return
	}
	fmt.Fprintf(w, "m %s live\n", m.Digest)
}

// RepoEntries returns every tag and manifest row of repo, tombstones
// included, sorted.
func (db *DB) RepoEntries(ctx context.Context, repo string) ([]TagEntry, []ManifestEntry, error) {
	var tags []TagEntry
	var manifests []ManifestEntry
	err := db.scan(ctx, repo, func(_ string, t *TagEntry, m *ManifestEntry) {
		if t != nil {
			tags = append(tags, *t)
		} else {
			manifests = append(manifests, *m)
		}
	})
	return tags, manifests, err
}

// Summaries returns a hash of every repository's tags and manifests.
func (db *DB) Summaries(ctx context.Context) (map[string]string, error) {
	hashes := map[string]hash.Hash{}
	err := db.scan(ctx, "", func(repo string, t *TagEntry, m *ManifestEntry) {
		h, ok := hashes[repo]
		if !ok {
			h = sha256.New()
			hashes[repo] = h
		}
		if t != nil {
			tagLine(h, *t)
		} else {
			manifestLine(h, *m)
		}
	})
	out := make(map[string]string, len(hashes))
	for repo, h := range hashes {
		out[repo] = hex.EncodeToString(h.Sum(nil))
	}
	return out, err
}

// SummaryOf hashes entries as Summaries does.
func SummaryOf(tags []TagEntry, manifests []ManifestEntry) string {
	h := sha256.New()
	for _, t := range tags {
		tagLine(h, t)
	}
	for _, m := range manifests {
		manifestLine(h, m)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// scan visits the tags then the manifests of repo ("" : of every
// repository), each sorted by repository then name or digest.
func (db *DB) scan(ctx context.Context, repo string, fn func(repo string, t *TagEntry, m *ManifestEntry)) error {
	rows, err := db.r.QueryContext(ctx, `
		SELECT repo, name, digest, version, origin, deleted FROM tags
		WHERE $1 = '' OR repo = $1 ORDER BY repo, name`, repo)
	if err != nil {
		return err
	}
	for rows.Next() {
		var r, d string
		var t TagEntry
		var del int
		if err := rows.Scan(&r, &t.Name, &d, &t.Version.Time, &t.Version.Region, &del); err != nil {
			rows.Close()
			return err
		}
		t.Digest, t.Deleted = digest.Digest(d), del != 0
		fn(r, &t, nil)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = db.r.QueryContext(ctx, `
		SELECT repo, digest, version, origin, deleted FROM manifests
		WHERE $1 = '' OR repo = $1 ORDER BY repo, digest`, repo)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r, d string
		var m ManifestEntry
		var del int
		if err := rows.Scan(&r, &d, &m.Version.Time, &m.Version.Region, &del); err != nil {
			return err
		}
		m.Digest, m.Deleted = digest.Digest(d), del != 0
		fn(r, nil, &m)
	}
	return rows.Err()
}
