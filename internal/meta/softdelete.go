package meta

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
)

// Soft delete: while the registry's soft-delete policy is on, a manifest
// deleted here (by a client, retention, a repository delete, or a peer's
// delete applied here) is kept restorable in deleted_manifests: its
// payload, and the tags that pointed at it here when it was deleted.
// The replicated rows (manifests, tags) are untouched by this: the delete
// is the same tombstone as ever, so summaries, anti-entropy and every
// peer see one registry; what is kept is each region's own, and each
// region keeps it as the delete reaches it. A manifest made live again (a
// restore, which is a push; or a push of the same bytes) leaves the table.

// DeletedManifest is a manifest kept restorable here.
type DeletedManifest struct {
	Repo      string        `json:"repository"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	Payload   []byte        `json:"-"`
	// Tags pointed at it here when its delete applied here.
	Tags []string `json:"tags"`
	// Deleted is the delete's version: its time and the region that
	// deleted it (the same in every region).
	Deleted hlc.Version `json:"-"`
	// DeletedBy names who deleted it, when the delete was made here ("":
	// a peer's delete, whose actor is in that region's audit log).
	DeletedBy string `json:"deletedBy,omitempty"`
	// Kept is when this region kept it.
	Kept time.Time `json:"kept"`
}

// SetKeepDeleted has every manifest delete in this store consult keep:
// when it says so, the manifest is kept restorable (above). keep must
// not wait on the store.
func (db *DB) SetKeepDeleted(keep func() bool) { db.keepDeleted = keep }

// keepDeleted keeps manifest d of repo restorable, if the policy is on
// and the manifest is live here and a delete at v wins over it. Called
// before the delete in the same transaction.
func (tx *Tx) keepDeleted(ctx context.Context, repo string, d digest.Digest, v hlc.Version, now time.Time) error {
	if tx.db.keepDeleted == nil || !tx.db.keepDeleted() {
		return nil
	}
	var mv hlc.Version
	var deleted int
	var size int64
	err := tx.queryRow(ctx, `SELECT version, origin, deleted, size FROM manifests WHERE repo = $1 AND digest = $2`, repo, d.String()).
		Scan(&mv.Time, &mv.Region, &deleted, &size)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && (deleted != 0 || !mv.Less(v))) {
		return nil // nothing live here, or the delete loses
	}
	if err != nil {
		return err
	}
	// The tags pointing at it, and those its delete removed already: a
	// delete's tag records come before its manifest record, at its
	// version.
	tags, err := tx.liveTags(ctx, repo, d)
	if err != nil {
		return err
	}
	rows, err := tx.query(ctx, `SELECT name FROM tags WHERE repo = $1 AND deleted = 1 AND version = $2 AND origin = $3 ORDER BY name`,
		repo, v.Time, v.Region)
	if err != nil {
		return err
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		tags = append(tags, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	actor := ""
	if tx.db.actorOf != nil {
		actor = tx.db.actorOf(ctx)
	}
	_, err = tx.exec(ctx, `
		INSERT INTO deleted_manifests (repo, digest, media_type, size, payload, tags, deleted_version, deleted_origin, deleted_by, kept_at)
		SELECT repo, digest, media_type, size, payload, $3, $4, $5, $6, $7 FROM manifests WHERE repo = $1 AND digest = $2
		ON CONFLICT (repo, digest) DO UPDATE SET media_type = excluded.media_type, size = excluded.size,
			payload = excluded.payload, tags = excluded.tags, deleted_version = excluded.deleted_version,
			deleted_origin = excluded.deleted_origin, deleted_by = excluded.deleted_by, kept_at = excluded.kept_at`,
		repo, d.String(), strings.Join(tags, "\n"), v.Time, v.Region, actor, now.UnixMilli())
	return err
}

// forgetDeleted drops what was kept of manifest d of repo: it is live
// again.
func (tx *Tx) forgetDeleted(ctx context.Context, repo string, d digest.Digest) error {
	_, err := tx.exec(ctx, `DELETE FROM deleted_manifests WHERE repo = $1 AND digest = $2`, repo, d.String())
	return err
}

const deletedColumns = `d.repo, d.digest, d.media_type, d.size, d.payload, d.tags, d.deleted_version, d.deleted_origin, d.deleted_by, d.kept_at`

// DeletedManifests lists the manifests of repo kept restorable here whose
// delete is at or after since, newest delete first (at most n).
// With repo "", of every repository.
func (db *DB) DeletedManifests(ctx context.Context, repo string, since time.Time, n int) ([]DeletedManifest, error) {
	q, args := `SELECT `+deletedColumns+` FROM deleted_manifests d
		JOIN manifests m ON m.repo = d.repo AND m.digest = d.digest AND m.deleted = 1
		WHERE d.repo = $1 AND d.deleted_version >= $2 ORDER BY d.deleted_version DESC, d.digest LIMIT $3`, []any{repo, hlc.TimeAt(since), n}
	if repo == "" {
		q, args = `SELECT `+deletedColumns+` FROM deleted_manifests d
		JOIN manifests m ON m.repo = d.repo AND m.digest = d.digest AND m.deleted = 1
		WHERE d.deleted_version >= $1 ORDER BY d.deleted_version DESC, d.repo, d.digest LIMIT $2`, []any{hlc.TimeAt(since), n}
	}
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DeletedManifest
	for rows.Next() {
		m, err := scanDeleted(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeletedManifest returns manifest d of repo as kept restorable here;
// ErrNotFound when it is not (never deleted while the policy was on,
// purged, or live).
func (db *DB) DeletedManifest(ctx context.Context, repo string, d digest.Digest) (DeletedManifest, error) {
	rows, err := db.query(ctx, `SELECT `+deletedColumns+` FROM deleted_manifests d
		JOIN manifests m ON m.repo = d.repo AND m.digest = d.digest AND m.deleted = 1
		WHERE d.repo = $1 AND d.digest = $2`, repo, d.String())
	if err != nil {
		return DeletedManifest{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return DeletedManifest{}, err
		}
		return DeletedManifest{}, ErrNotFound
	}
	return scanDeleted(rows)
}

func scanDeleted(rows *sql.Rows) (DeletedManifest, error) {
	var m DeletedManifest
	var d, tags string
	var kept int64
	if err := rows.Scan(&m.Repo, &d, &m.MediaType, &m.Size, &m.Payload, &tags, &m.Deleted.Time, &m.Deleted.Region, &m.DeletedBy, &kept); err != nil {
		return m, err
	}
	m.Digest, m.Kept, m.Tags = digest.Digest(d), time.UnixMilli(kept), []string{}
	if tags != "" {
		m.Tags = strings.Split(tags, "\n")
	}
	return m, nil
}

// RestorablePayloads returns, in tx, the payloads of repo's manifests kept
// restorable whose delete is at or after since: what garbage collection
// keeps the blobs of.
func (tx *Tx) RestorablePayloads(ctx context.Context, repo string, since time.Time) ([]Payload, error) {
	return tx.payloads(ctx, `SELECT digest, media_type, payload FROM deleted_manifests WHERE repo = $1 AND deleted_version >= $2`,
		repo, hlc.TimeAt(since))
}

// PurgeDeleted drops, in tx, what was kept of repo's manifests deleted
// before (or, with d set, of that manifest if its delete is not after
// deletedBy); it returns the digests dropped.
func (tx *Tx) PurgeDeleted(ctx context.Context, repo string, before time.Time, d digest.Digest, deletedBy hlc.Version) ([]digest.Digest, error) {
	if err := tx.writes(repo); err != nil {
		return nil, err
	}
	var rows *sql.Rows
	var err error
	if d != "" {
		rows, err = tx.query(ctx, `DELETE FROM deleted_manifests WHERE repo = $1 AND digest = $2
			AND (deleted_version < $3 OR (deleted_version = $3 AND deleted_origin <= $4)) RETURNING digest`,
			repo, d.String(), deletedBy.Time, deletedBy.Region)
	} else {
		rows, err = tx.query(ctx, `DELETE FROM deleted_manifests WHERE repo = $1 AND deleted_version < $2 RETURNING digest`, repo, hlc.TimeAt(before))
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []digest.Digest
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, digest.Digest(s))
	}
	return out, rows.Err()
}
