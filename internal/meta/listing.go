package meta

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
)

// PinTag sets tag to d at version v whatever is stored: a lock pins a
// tag, and every region writes the same row (the lock's digest and
// version), so they agree without last-writer-wins.
func (tx *Tx) PinTag(ctx context.Context, repo, name string, d digest.Digest, v hlc.Version, now time.Time) error {
	if err := tx.writes(repo); err != nil {
		return err
	}
	tx.summaryChanged(repo)
	tx.changed(repo)
	if err := tx.EnsureRepository(ctx, repo, now); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `
		INSERT INTO tags (repo, name, digest, version, origin, updated_at, deleted)
		VALUES ($1, $2, $3, $4, $5, $6, 0)
		ON CONFLICT (repo, name) DO UPDATE SET
			digest = excluded.digest, version = excluded.version, origin = excluded.origin,
			updated_at = excluded.updated_at, deleted = 0`,
		repo, name, d.String(), v.Time, v.Region, now.UnixMilli())
	return err
}

// TagRecord returns a tag's row (live or tombstone) in the transaction.
func (tx *Tx) TagRecord(ctx context.Context, repo, name string) (*Tag, error) {
	return tagRecord(ctx, tx.tx, repo, name)
}

// LiveTags returns the live tags of repo pointing at d, in the transaction.
func (tx *Tx) LiveTags(ctx context.Context, repo string, d digest.Digest) ([]string, error) {
	return tx.liveTags(ctx, repo, d)
}

// TagInfo is a live tag as listed.
type TagInfo struct {
	Name    string        `json:"name"`
	Digest  digest.Digest `json:"digest"`
	Updated time.Time     `json:"lastUpdateTime"`
	Origin  string        `json:"origin"`
}

// TagList returns repo's live tags (of live manifests).
func (db *DB) TagList(ctx context.Context, repo string) ([]TagInfo, error) {
	rows, err := db.query(ctx, `
		SELECT t.name, t.digest, t.updated_at, t.origin FROM tags t
		JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
		WHERE t.repo = $1 AND t.deleted = 0 AND m.deleted = 0 ORDER BY t.name`, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TagInfo
	for rows.Next() {
		var t TagInfo
		var d string
		var at int64
		if err := rows.Scan(&t.Name, &d, &at, &t.Origin); err != nil {
			return nil, err
		}
		t.Digest, t.Updated = digest.Digest(d), time.UnixMilli(at)
		out = append(out, t)
	}
	return out, rows.Err()
}

// ManifestInfo is a live manifest as listed.
type ManifestInfo struct {
	Digest       digest.Digest `json:"digest"`
	MediaType    string        `json:"mediaType"`
	ArtifactType string        `json:"artifactType,omitempty"`
	Size         int64         `json:"imageSize"`
	Created      time.Time     `json:"createdTime"`
	Subject      string        `json:"subject,omitempty"`
	Origin       string        `json:"origin"`
	Tags         []string      `json:"tags"`
	Payload      []byte        `json:"-"`
}

// ManifestList returns repo's live manifests with their live tags.
func (db *DB) ManifestList(ctx context.Context, repo string) ([]ManifestInfo, error) {
	rows, err := db.query(ctx, `
		SELECT digest, media_type, artifact_type, size, created_at, subject, origin, payload FROM manifests
		WHERE repo = $1 AND deleted = 0 ORDER BY created_at, digest`, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ManifestInfo
	index := map[digest.Digest]int{}
	for rows.Next() {
		var m ManifestInfo
		var d string
		var at int64
		if err := rows.Scan(&d, &m.MediaType, &m.ArtifactType, &m.Size, &at, &m.Subject, &m.Origin, &m.Payload); err != nil {
			return nil, err
		}
		m.Digest, m.Created, m.Tags = digest.Digest(d), time.UnixMilli(at), []string{}
		index[m.Digest] = len(out)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	tags, err := db.TagList(ctx, repo)
	if err != nil {
		return nil, err
	}
	for _, t := range tags {
		if i, ok := index[t.Digest]; ok {
			out[i].Tags = append(out[i].Tags, t.Name)
		}
	}
	return out, nil
}
