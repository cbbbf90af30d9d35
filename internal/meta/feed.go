package meta

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
)

// Kinds of change a region's feed records.
const (
	KindBlob           = "blob"            // a blob was linked in a repository
	KindManifest       = "manifest"        // a manifest was stored
	KindTag            = "tag"             // a tag was set
	KindTagDelete      = "tag_delete"      // a tag was deleted (tombstone)
	KindManifestDelete = "manifest_delete" // a manifest was deleted (tombstone)
	KindBlobDelete     = "blob_delete"     // a blob was deleted from a repository (tombstone)
	KindAck            = "ack"             // a manifest from a peer is complete and pullable here
	KindSetting        = "setting"         // a registry setting (Tag: its name, MediaType: its kind) changed
)

// Record is one change a region originated, in the order it committed.
// Seq numbers have no gaps: records are appended by the single writer in
// the transaction of the change they describe.
type Record struct {
	Seq       int64
	Kind      string
	Repo      string
	Digest    digest.Digest
	Tag       string
	MediaType string
	Size      int64
	Version   hlc.Version
	Created   time.Time
	// Data is the content of a small blob or manifest, carried inline so a
	// peer needs no round trip to fetch it, or a setting's value. Not
	// stored: filled in when the feed is served.
	Data []byte
	// Deleted marks a setting record whose key is a tombstone now.
	Deleted bool
}

// AppendFeed appends rec to the region's feed inside the transaction of the
// change it records, so the change and its record commit together.
//
// Sequence numbers: SQLite's AUTOINCREMENT; with PostgreSQL the record is
// numbered at the transaction's end, after the feed's largest, under the
// feed sequencer's lock held through the commit (scope.go), so numbers
// commit in order with no gaps whichever node writes (a sequence would
// leave gaps on rollback and commit out of order). Every node listening
// is notified when the append commits.
func (tx *Tx) AppendFeed(ctx context.Context, rec Record) error {
	if err := tx.writes(rec.Repo); err != nil {
		return err
	}
	if tx.dialect == postgres {
		tx.feed = append(tx.feed, rec)
		return nil
	}
	res, err := tx.exec(ctx, `
		INSERT INTO feed (kind, repo, digest, tag, media_type, size, version, origin, created_at, blob_bytes)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
			COALESCE((SELECT blob_bytes FROM feed WHERE seq = (SELECT MAX(seq) FROM feed)), 0) + CASE WHEN $1 = 'blob' THEN $6 ELSE 0 END)`,
		rec.Kind, rec.Repo, rec.Digest.String(), rec.Tag, rec.MediaType, rec.Size,
		rec.Version.Time, rec.Version.Region, rec.Created.UnixMilli())
	if err != nil {
		return err
	}
	tx.lastSeq, err = res.LastInsertId()
	return err
}

// Feed returns up to n records with seq > since, in order.
func (db *DB) Feed(ctx context.Context, since int64, n int) ([]Record, error) {
	rows, err := db.query(ctx, `
		SELECT seq, kind, repo, digest, tag, media_type, size, version, origin, created_at
		FROM feed WHERE seq > $1 ORDER BY seq LIMIT $2`, since, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var d string
		var created int64
		if err := rows.Scan(&r.Seq, &r.Kind, &r.Repo, &d, &r.Tag, &r.MediaType, &r.Size,
			&r.Version.Time, &r.Version.Region, &created); err != nil {
			return nil, err
		}
		r.Digest = digest.Digest(d)
		r.Created = time.UnixMilli(created)
		out = append(out, r)
	}
	return out, rows.Err()
}

// FeedHead returns the seq of the newest record, 0 when the feed is empty.
func (db *DB) FeedHead(ctx context.Context) (int64, error) {
	var seq *int64
	if err := db.queryRow(ctx, `SELECT MAX(seq) FROM feed`).Scan(&seq); err != nil || seq == nil {
		return 0, err
	}
	return *seq, nil
}

// SettingRecord returns a setting's value or tombstone, or ErrNotFound.
func (db *DB) SettingRecord(ctx context.Context, kind, name string) (*Setting, error) {
	return settingRecord(ctx, db.r, kind, name)
}

func settingRecord(ctx context.Context, q queryer, kind, name string) (*Setting, error) {
	s := &Setting{Kind: kind, Name: name}
	var value string
	var updated, del int64
	err := q.QueryRowContext(ctx,
		`SELECT value, version, origin, updated_at, deleted FROM settings WHERE kind = $1 AND name = $2`,
		kind, name).Scan(&value, &s.Version.Time, &s.Version.Region, &updated, &del)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	s.Value, s.Updated, s.Deleted = json.RawMessage(value), time.UnixMilli(updated), del != 0
	return s, err
}

// SetCursor records that every record of peer's feed up to seq has been
// applied here. It is written in the transaction that applied seq, so a
// crash never leaves a record applied but not counted, or counted but not
// applied. The cursor only moves forward.
//
// The row is written at the transaction's end (writeCursors), once per
// peer however many of the batch's writes moved it: a follower applying
// records side by side moves one peer's cursor in nearly every write of a
// batch, and each would otherwise cost a round trip to PostgreSQL and hold
// the peer's row from its write to the commit. A write that fails takes
// its move back with it (runBatch).
func (tx *Tx) SetCursor(ctx context.Context, peer string, seq int64, now time.Time) error {
	if err := tx.writesCursor(); err != nil {
		return err
	}
	if m, ok := tx.cursors[peer]; !ok || seq > m.seq {
		if tx.cursors == nil {
			tx.cursors = map[string]cursorMove{}
		}
		tx.cursors[peer] = cursorMove{seq: seq, at: now.UnixMilli()}
	}
	return nil
}

// cursorMove is how far a transaction moves a peer's cursor, and when.
type cursorMove struct{ seq, at int64 }

// writeCursors writes the cursors the transaction's writes moved, in the
// peers' order (two transactions moving the same two cursors take their
// rows in the same order).
func (tx *Tx) writeCursors(ctx context.Context) error {
	for _, peer := range slices.Sorted(maps.Keys(tx.cursors)) {
		m := tx.cursors[peer]
		if _, err := tx.exec(ctx, `
			INSERT INTO peer_cursors (peer, seq, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (peer) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at
			WHERE excluded.seq > peer_cursors.seq`, peer, m.seq, m.at); err != nil {
			return fmt.Errorf("move the cursor of %s: %w", peer, err)
		}
	}
	tx.cursors = nil
	return nil
}

// Cursor returns how far peer's feed has been applied here (0: nothing).
func (db *DB) Cursor(ctx context.Context, peer string) (int64, error) {
	var seq int64
	err := db.queryRow(ctx, `SELECT seq FROM peer_cursors WHERE peer = $1`, peer).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

// TombstoneManifest records that manifest d of repo was deleted at version
// v, whether or not it is held here, unless a later write is stored. Tags
// are left alone: the origin of the delete records its tag deletes one by
// one. It reports whether the row changed.
func (tx *Tx) TombstoneManifest(ctx context.Context, repo string, d digest.Digest, v hlc.Version, now time.Time) (bool, error) {
	if err := tx.writes(repo); err != nil {
		return false, err
	}
	tx.summaryChanged(repo)
	tx.changed(repo)
	if err := tx.EnsureRepository(ctx, repo, now); err != nil {
		return false, err
	}
	if err := tx.keepDeleted(ctx, repo, d, v, now); err != nil {
		return false, err
	}
	res, err := tx.exec(ctx, `
		INSERT INTO manifests (repo, digest, media_type, size, payload, created_at, version, origin, deleted)
		VALUES ($1, $2, '', 0, $3, $4, $5, $6, 1)
		ON CONFLICT (repo, digest) DO UPDATE SET deleted = 1, payload = excluded.payload,
			version = excluded.version, origin = excluded.origin
		WHERE `+newerWins("manifests"),
		repo, d.String(), []byte{}, now.UnixMilli(), v.Time, v.Region)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return false, err
	}
	return true, tx.ForgetPresence(ctx, repo, d)
}

// The queries of FeedBytes: the running total at the newest record, and
// at the newest record up to a sequence number.
const (
	feedTotalQuery  = `SELECT blob_bytes FROM feed WHERE seq = (SELECT MAX(seq) FROM feed)`
	feedBeforeQuery = `SELECT blob_bytes FROM feed WHERE seq <= $1 ORDER BY seq DESC LIMIT 1`
)

// FeedBytes returns the total size of the blob records in the feed, and of
// those after since: how many bytes a peer that applied up to since has
// done and has left. Each record carries the running total (blob_bytes),
// so this is two lookups by sequence number whatever the feed's length.
func (db *DB) FeedBytes(ctx context.Context, since int64) (total, after int64, err error) {
	err = db.queryRow(ctx, feedTotalQuery).Scan(&total)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	var before int64
	err = db.queryRow(ctx, feedBeforeQuery, since).Scan(&before)
	if errors.Is(err, sql.ErrNoRows) && since > 0 {
		// since is at or below the floor of a compacted feed: the total
		// through the floor was kept when its records went.
		before, _, err = db.RegionState(ctx, feedFloorBytesState)
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, 0, err
	}
	return total, total - before, nil
}
