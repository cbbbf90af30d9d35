package meta

import (
	"context"
	"database/sql"
	"errors"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
)

// Tag history: while soft delete is on (SetKeepDeleted), every tag write
// this region applies, a push or delete here or a peer's, winning or
// not, is recorded with its version, the digest it set (none for a
// delete) and, for a client's write here, who asked. The first write of
// a tag recorded also records the state it found: the tag as it was (at
// its own version), or that there was none (a deleted move at version
// 0). So a tag's state at any time since its first recorded write is
// known: the latest move at or before that time. Like soft delete's
// kept manifests, history is a region's own; every region records every
// move its feeds bring.

// TagMove is one recorded write of a tag.
type TagMove struct {
	Tag     string        `json:"tag"`
	Digest  digest.Digest `json:"digest,omitempty"` // "" for a delete
	Deleted bool          `json:"deleted"`
	Version hlc.Version   `json:"-"`
	Actor   string        `json:"actor,omitempty"`
}

// SetActorOf has tag writes record who asked, as of names it from a
// write's context.
func (db *DB) SetActorOf(of func(context.Context) string) { db.actorOf = of }

// recordTagMove records a write of repo:name in tx (see above), before
// the write.
func (tx *Tx) recordTagMove(ctx context.Context, repo, name, d string, v hlc.Version, now time.Time, deleted bool) error {
	if tx.db.keepDeleted == nil || !tx.db.keepDeleted() {
		return nil
	}
	var n int
	if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM tag_history WHERE repo = $1 AND tag = $2`, repo, name).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		// What the write finds: the tag as it is, or none.
		var prev TagMove
		var pd string
		var pdel int
		err := tx.queryRow(ctx, `SELECT digest, version, origin, deleted FROM tags WHERE repo = $1 AND name = $2`, repo, name).
			Scan(&pd, &prev.Version.Time, &prev.Version.Region, &pdel)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			err = tx.insertTagMove(ctx, repo, name, "", hlc.Version{}, true, "", now)
		case err == nil:
			err = tx.insertTagMove(ctx, repo, name, pd, prev.Version, pdel != 0, "", now)
		}
		if err != nil {
			return err
		}
	}
	actor := ""
	if tx.db.actorOf != nil {
		actor = tx.db.actorOf(ctx)
	}
	return tx.insertTagMove(ctx, repo, name, d, v, deleted, actor, now)
}

func (tx *Tx) insertTagMove(ctx context.Context, repo, name, d string, v hlc.Version, deleted bool, actor string, now time.Time) error {
	del := 0
	if deleted {
		del = 1
	}
	_, err := tx.exec(ctx, `
		INSERT INTO tag_history (repo, tag, version, origin, digest, deleted, actor, recorded_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (repo, tag, version, origin) DO NOTHING`,
		repo, name, v.Time, v.Region, d, del, actor, now.UnixMilli())
	return err
}

// TagHistory returns the recorded moves of repo's tags (of tag alone when
// set), by tag and version, at most n.
func (db *DB) TagHistory(ctx context.Context, repo, tag string, n int) ([]TagMove, error) {
	q := `SELECT tag, digest, deleted, version, origin, actor FROM tag_history WHERE repo = $1 ORDER BY tag, version, origin LIMIT $2`
	args := []any{repo, n}
	if tag != "" {
		q = `SELECT tag, digest, deleted, version, origin, actor FROM tag_history WHERE repo = $1 AND tag = $2 ORDER BY version, origin LIMIT $3`
		args = []any{repo, tag, n}
	}
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []TagMove{}
	for rows.Next() {
		var m TagMove
		var d string
		var del int
		if err := rows.Scan(&m.Tag, &d, &del, &m.Version.Time, &m.Version.Region, &m.Actor); err != nil {
			return nil, err
		}
		m.Digest, m.Deleted = digest.Digest(d), del != 0
		out = append(out, m)
	}
	return out, rows.Err()
}

// PurgeTagHistory drops, in tx, repo's moves recorded before (by when they
// were recorded here), keeping each tag's latest: the state a restore to
// a time after before starts from. With all, it drops every move (the
// policy is off: moves from now on are not recorded, and a history with
// a gap would answer wrongly).
func (tx *Tx) PurgeTagHistory(ctx context.Context, repo string, before time.Time, all bool) (int64, error) {
	if err := tx.writes(repo); err != nil {
		return 0, err
	}
	if all {
		res, err := tx.exec(ctx, `DELETE FROM tag_history WHERE repo = $1`, repo)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	}
	res, err := tx.exec(ctx, `
		DELETE FROM tag_history WHERE repo = $1 AND recorded_at < $2 AND EXISTS (
			SELECT 1 FROM tag_history later WHERE later.repo = tag_history.repo AND later.tag = tag_history.tag
				AND (later.version > tag_history.version OR (later.version = tag_history.version AND later.origin > tag_history.origin))
				AND later.recorded_at < $2)`,
		repo, before.UnixMilli())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// TagStates returns repo's live tag rows, with their versions.
func (db *DB) TagStates(ctx context.Context, repo string) ([]Tag, error) {
	rows, err := db.query(ctx, `SELECT name, digest, version, origin FROM tags WHERE repo = $1 AND deleted = 0 ORDER BY name`, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Tag
	for rows.Next() {
		t := Tag{Repo: repo}
		var d string
		if err := rows.Scan(&t.Name, &d, &t.Version.Time, &t.Version.Region); err != nil {
			return nil, err
		}
		t.Digest = digest.Digest(d)
		out = append(out, t)
	}
	return out, rows.Err()
}
