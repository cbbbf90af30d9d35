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

// BlobTombstoneEntry is a blob deleted from a repository, as anti-entropy
// compares it: live links are not compared (garbage collection and
// read-through make them differ between regions by design), deletes are.
type BlobTombstoneEntry struct {
	Digest  digest.Digest `json:"digest"`
	Version hlc.Version   `json:"-"`
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

func blobLine(w io.Writer, b BlobTombstoneEntry) {
	fmt.Fprintf(w, "b %s deleted %s\n", b.Digest, b.Version)
}

// entry is one row scan visits: exactly one field is set.
type entry struct {
	tag      *TagEntry
	manifest *ManifestEntry
	blob     *BlobTombstoneEntry
}

func (e entry) line(w io.Writer) {
	switch {
	case e.tag != nil:
		tagLine(w, *e.tag)
	case e.manifest != nil:
		manifestLine(w, *e.manifest)
	default:
		blobLine(w, *e.blob)
	}
}

// RepoState is every tag and manifest row of a repository, tombstones
// included, and its blob tombstones, each sorted.
type RepoState struct {
	Tags      []TagEntry
	Manifests []ManifestEntry
	Blobs     []BlobTombstoneEntry
}

// RepoEntries returns repo's state for anti-entropy.
func (db *DB) RepoEntries(ctx context.Context, repo string) (RepoState, error) {
	var st RepoState
	err := db.scan(ctx, repo, func(_ string, e entry) {
		switch {
		case e.tag != nil:
			st.Tags = append(st.Tags, *e.tag)
		case e.manifest != nil:
			st.Manifests = append(st.Manifests, *e.manifest)
		default:
			st.Blobs = append(st.Blobs, *e.blob)
		}
	})
	return st, err
}

// Summaries returns a hash of every repository's tags and manifests, from
// the node's summaries (summarytree.go).
func (db *DB) Summaries(ctx context.Context) (map[string]string, error) {
	return db.BucketSummaries(ctx, -1)
}

// summariesByScan hashes every repository's tags and manifests in one
// scan of the store, and counts each one's rows.
func (db *DB) summariesByScan(ctx context.Context) (map[string]cachedSummary, error) {
	hashes := map[string]hash.Hash{}
	rows := map[string]int{}
	err := db.scan(ctx, "", func(repo string, e entry) {
		h, ok := hashes[repo]
		if !ok {
			h = sha256.New()
			hashes[repo] = h
		}
		e.line(h)
		rows[repo]++
	})
	out := make(map[string]cachedSummary, len(hashes))
	for repo, h := range hashes {
		out[repo] = cachedSummary{hash: hex.EncodeToString(h.Sum(nil)), rows: rows[repo]}
	}
	return out, err
}

// SummaryOf hashes a repository's state as Summaries does.
func SummaryOf(st RepoState) string {
	h := sha256.New()
	for _, t := range st.Tags {
		tagLine(h, t)
	}
	for _, m := range st.Manifests {
		manifestLine(h, m)
	}
	for _, b := range st.Blobs {
		blobLine(h, b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// scan visits the tags, then the manifests, then the blob tombstones of
// repo ("": of every repository), each sorted by repository then name or
// digest.
func (db *DB) scan(ctx context.Context, repo string, fn func(repo string, e entry)) error {
	// One repository's rows by its index (a "$1 = '' OR repo = $1" would
	// read the whole table for each).
	where, args := "", []any{}
	if repo != "" {
		where, args = "WHERE repo = $1", []any{repo}
	}
	rows, err := db.query(ctx, `
		SELECT repo, name, digest, version, origin, deleted FROM tags
		`+where+` ORDER BY repo, name`, args...)
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
		fn(r, entry{tag: &t})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = db.query(ctx, `
		SELECT repo, digest, version, origin, deleted FROM manifests
		`+where+` ORDER BY repo, digest`, args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var r, d string
		var m ManifestEntry
		var del int
		if err := rows.Scan(&r, &d, &m.Version.Time, &m.Version.Region, &del); err != nil {
			rows.Close()
			return err
		}
		m.Digest, m.Deleted = digest.Digest(d), del != 0
		fn(r, entry{manifest: &m})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = db.query(ctx, `
		SELECT repo, digest, version, origin FROM blob_tombstones
		`+where+` ORDER BY repo, digest`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r, d string
		var b BlobTombstoneEntry
		if err := rows.Scan(&r, &d, &b.Version.Time, &b.Version.Region); err != nil {
			return err
		}
		b.Digest = digest.Digest(d)
		fn(r, entry{blob: &b})
	}
	return rows.Err()
}
