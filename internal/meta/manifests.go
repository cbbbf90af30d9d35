package meta

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
)

// Manifest is a stored manifest with the facts the registry indexes.
type Manifest struct {
	Repo         string
	Digest       digest.Digest
	MediaType    string
	Size         int64
	Payload      []byte // exactly as pushed
	Subject      digest.Digest
	ArtifactType string
	Annotations  map[string]string
	Created      time.Time
	Version      hlc.Version // of the last write: its time and origin region
}

// PutManifest stores m, idempotently and last-writer-wins by version: a
// manifest is immutable content, so storing it again over a row (live or
// tombstone) whose version is older only moves its version forward (and
// revives a tombstone); over a newer row it changes nothing. A re-push of
// a live manifest thus carries its new version, and a delete older than
// the re-push does not win over it in any region. It reports whether the
// manifest is newly live (there was no row, or a tombstone).
func (tx *Tx) PutManifest(ctx context.Context, m *Manifest) (bool, error) {
	if err := tx.writes(m.Repo); err != nil {
		return false, err
	}
	tx.summaryChanged(m.Repo)
	ann := ""
	if len(m.Annotations) > 0 {
		b, _ := json.Marshal(m.Annotations)
		ann = string(b)
	}
	args := []any{m.Repo, m.Digest.String(), m.MediaType, m.Size, m.Payload, m.Subject.String(), m.ArtifactType, ann,
		m.Created.UnixMilli(), m.Version.Time, m.Version.Region}
	var prev hlc.Version
	var exists, prevDeleted bool
	if tx.dialect == postgres {
		// One round trip: the row before (prev reads the statement's
		// snapshot, from before the upsert) and the upsert, which stores
		// only over an older row.
		var t sql.NullInt64
		var origin sql.NullString
		var del sql.NullInt64
		var stored int
		if err := tx.queryRow(ctx, `WITH prev AS (
				SELECT version, origin, deleted FROM manifests WHERE repo = $1 AND digest = $2
			), put AS (`+putManifest+` WHERE `+newerWins("manifests")+` RETURNING 1)
			SELECT p.version, p.origin, p.deleted, (SELECT COUNT(*) FROM put) FROM (SELECT 1) AS one LEFT JOIN prev p ON true`,
			args...).Scan(&t, &origin, &del, &stored); err != nil {
			return false, err
		}
		exists, prev, prevDeleted = t.Valid, hlc.Version{Time: t.Int64, Region: origin.String}, del.Int64 != 0
		if stored == 0 {
			return false, nil
		}
	} else {
		var err error
		prev, prevDeleted, err = tx.ManifestVersion(ctx, m.Repo, m.Digest)
		exists = err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, err
		}
		if exists && !prev.Less(m.Version) {
			return false, nil
		}
		if _, err := tx.exec(ctx, putManifest, args...); err != nil {
			return false, err
		}
	}
	if err := tx.EnsureRepository(ctx, m.Repo, m.Created); err != nil {
		return false, err
	}
	if exists && !prevDeleted {
		// A live manifest's version moves: caches hold its old one. A
		// new or revived manifest is in no cache.
		tx.changed(m.Repo)
	}
	if exists && prevDeleted {
		// Live again (a restore is a push): nothing kept to restore.
		if err := tx.forgetDeleted(ctx, m.Repo, m.Digest); err != nil {
			return false, err
		}
	}
	return !exists || prevDeleted, nil
}

// putManifest stores a manifest's row over the one there (PutManifest
// decides whether it may).
const putManifest = `
		INSERT INTO manifests (repo, digest, media_type, size, payload, subject, artifact_type, annotations, created_at, version, origin, deleted)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0)
		ON CONFLICT (repo, digest) DO UPDATE SET
			media_type = excluded.media_type, size = excluded.size, payload = excluded.payload,
			subject = excluded.subject, artifact_type = excluded.artifact_type, annotations = excluded.annotations,
			version = excluded.version, origin = excluded.origin, deleted = 0`

// RaiseManifestVersion moves a live manifest's version forward to v when
// v is newer: a peer's record of a push of a manifest held here already
// (a re-push there), so a delete older than that push does not win over
// it here either.
func (tx *Tx) RaiseManifestVersion(ctx context.Context, repo string, d digest.Digest, v hlc.Version) error {
	if err := tx.writes(repo); err != nil {
		return err
	}
	tx.summaryChanged(repo)
	tx.changed(repo)
	_, err := tx.exec(ctx, `
		UPDATE manifests SET version = $3, origin = $4
		WHERE repo = $1 AND digest = $2 AND deleted = 0 AND (version < $3 OR (version = $3 AND origin < $4))`,
		repo, d.String(), v.Time, v.Region)
	return err
}

// GetManifest returns a live manifest, or ErrNotFound.
func (db *DB) GetManifest(ctx context.Context, repo string, d digest.Digest) (*Manifest, error) {
	return getManifest(ctx, db.r, repo, d)
}

// GetManifest returns a live manifest inside the transaction.
func (tx *Tx) GetManifest(ctx context.Context, repo string, d digest.Digest) (*Manifest, error) {
	return getManifest(ctx, tx.tx, repo, d)
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func getManifest(ctx context.Context, q queryer, repo string, d digest.Digest) (*Manifest, error) {
	m := &Manifest{Repo: repo, Digest: d}
	var subject, ann string
	var created int64
	err := q.QueryRowContext(ctx, `
		SELECT media_type, size, payload, subject, artifact_type, annotations, created_at, version, origin
		FROM manifests WHERE repo = $1 AND digest = $2 AND deleted = 0`, repo, d.String()).
		Scan(&m.MediaType, &m.Size, &m.Payload, &subject, &m.ArtifactType, &ann, &created, &m.Version.Time, &m.Version.Region)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	m.Subject = digest.Digest(subject)
	m.Created = time.UnixMilli(created)
	if ann != "" {
		_ = json.Unmarshal([]byte(ann), &m.Annotations)
	}
	return m, nil
}

// ManifestsExist returns which of ds are live manifests in repo, in one
// query.
func (tx *Tx) ManifestsExist(ctx context.Context, repo string, ds []digest.Digest) (map[digest.Digest]bool, error) {
	out := make(map[digest.Digest]bool, len(ds))
	if len(ds) == 0 {
		return out, nil
	}
	in, list := tx.digestIn(ds)
	rows, err := tx.query(ctx, `SELECT digest FROM manifests WHERE repo = $1 AND deleted = 0 AND digest IN `+in, repo, list)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out[digest.Digest(d)] = true
	}
	return out, rows.Err()
}

// DeleteManifest turns a live manifest into a tombstone at version v and
// tombstones every live tag pointing at it. It returns the tags deleted,
// or ErrNotFound when the manifest is not live. A tombstone is kept so a
// late, older write cannot bring the manifest back.
func (tx *Tx) DeleteManifest(ctx context.Context, repo string, d digest.Digest, v hlc.Version, now time.Time) ([]string, error) {
	if err := tx.writes(repo); err != nil {
		return nil, err
	}
	tx.summaryChanged(repo)
	tx.changed(repo)
	if err := tx.keepDeleted(ctx, repo, d, v, now); err != nil {
		return nil, err
	}
	res, err := tx.exec(ctx, `
		UPDATE manifests SET deleted = 1, payload = $3, version = $4, origin = $5
		WHERE repo = $1 AND digest = $2 AND deleted = 0`,
		repo, d.String(), []byte{}, v.Time, v.Region)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, ErrNotFound
	}
	if err := tx.ForgetPresence(ctx, repo, d); err != nil {
		return nil, err
	}
	tags, err := tx.liveTags(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	for _, name := range tags {
		if _, err := tx.DeleteTag(ctx, repo, name, v, now); err != nil {
			return nil, err
		}
	}
	return tags, nil
}

// liveTags returns the live tags of repo pointing at d.
func (tx *Tx) liveTags(ctx context.Context, repo string, d digest.Digest) ([]string, error) {
	rows, err := tx.query(ctx,
		`SELECT name FROM tags WHERE repo = $1 AND digest = $2 AND deleted = 0 ORDER BY name`, repo, d.String())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var tags []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		tags = append(tags, name)
	}
	return tags, rows.Err()
}

// Referrer is one manifest whose subject is a given digest.
type Referrer struct {
	Digest       digest.Digest
	MediaType    string
	Size         int64
	ArtifactType string
	Annotations  map[string]string
}

// Referrers lists the live manifests in repo whose subject is subject,
// filtered by artifactType when it is not empty, ordered by digest.
//
// One page: the referrers after digest after (all when empty), in digest
// order, at most limit of them, and no more once their annotations
// passed maxBytes (at least one). more reports that others follow.
func (db *DB) Referrers(ctx context.Context, repo string, subject digest.Digest, artifactType string, after digest.Digest, limit, maxBytes int) (out []Referrer, more bool, err error) {
	rows, err := db.query(ctx, `
		SELECT digest, media_type, size, artifact_type, annotations FROM manifests
		WHERE repo = $1 AND subject = $2 AND deleted = 0 AND ($3 = '' OR artifact_type = $3) AND digest > $4
		ORDER BY digest LIMIT $5`, repo, subject.String(), artifactType, after.String(), limit+1)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	bytes := 0
	for rows.Next() {
		if len(out) == limit || (len(out) > 0 && bytes >= maxBytes) {
			return out, true, nil
		}
		var r Referrer
		var d, ann string
		if err := rows.Scan(&d, &r.MediaType, &r.Size, &r.ArtifactType, &ann); err != nil {
			return nil, false, err
		}
		r.Digest = digest.Digest(d)
		if ann != "" {
			_ = json.Unmarshal([]byte(ann), &r.Annotations)
		}
		bytes += len(d) + len(r.MediaType) + len(r.ArtifactType) + len(ann) + 64
		out = append(out, r)
	}
	return out, false, rows.Err()
}

// ManifestVersion returns the version of manifest d's row in repo, live or
// tombstone, and whether it is a tombstone; ErrNotFound when there is no
// row.
func (tx *Tx) ManifestVersion(ctx context.Context, repo string, d digest.Digest) (hlc.Version, bool, error) {
	return manifestVersion(ctx, tx.tx, repo, d)
}

// ManifestVersion is Tx.ManifestVersion outside a transaction.
func (db *DB) ManifestVersion(ctx context.Context, repo string, d digest.Digest) (hlc.Version, bool, error) {
	return manifestVersion(ctx, db.r, repo, d)
}

func manifestVersion(ctx context.Context, q queryer, repo string, d digest.Digest) (hlc.Version, bool, error) {
	var v hlc.Version
	var del int
	err := q.QueryRowContext(ctx, `SELECT version, origin, deleted FROM manifests WHERE repo = $1 AND digest = $2`,
		repo, d.String()).Scan(&v.Time, &v.Region, &del)
	if errors.Is(err, sql.ErrNoRows) {
		return v, false, ErrNotFound
	}
	return v, del != 0, err
}
