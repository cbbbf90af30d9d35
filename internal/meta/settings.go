package meta

import (
	"context"
	"encoding/json"
	"time"

	"github.com/georeg/georeg/internal/hlc"
)

// Setting is one entry of the registry's configuration (a replica, and
// later a webhook, a lock, a user...), keyed by kind and name. Settings
// replicate like tags: last-writer-wins by version, deletes as tombstones,
// so any region can change them while another is down.
type Setting struct {
	Kind    string
	Name    string
	Value   json.RawMessage // empty in a tombstone
	Version hlc.Version
	Updated time.Time
	Deleted bool
}

// PutSetting writes s unless a later write of its key is stored; it
// reports whether the write won.
func (tx *Tx) PutSetting(ctx context.Context, s Setting) (bool, error) {
	if err := tx.writesRegion("PutSetting"); err != nil {
		return false, err
	}
	del, value := 0, string(s.Value)
	if s.Deleted {
		del, value = 1, ""
	}
	res, err := tx.exec(ctx, `
		INSERT INTO settings (kind, name, value, version, origin, updated_at, deleted)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (kind, name) DO UPDATE SET
			value = excluded.value, version = excluded.version, origin = excluded.origin,
			updated_at = excluded.updated_at, deleted = excluded.deleted
		WHERE `+newerWins("settings"),
		s.Kind, s.Name, value, s.Version.Time, s.Version.Region, s.Updated.UnixMilli(), del)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// Setting returns a live setting, or ErrNotFound (also for a tombstone).
func (db *DB) Setting(ctx context.Context, kind, name string) (*Setting, error) {
	s, err := db.SettingRecord(ctx, kind, name)
	if err == nil && s.Deleted {
		return nil, ErrNotFound
	}
	return s, err
}

// Settings lists the live settings of kind, by name; with tombstones
// when all is set (anti-entropy compares them too).
func (db *DB) Settings(ctx context.Context, kind string, all bool) ([]Setting, error) {
	return settings(ctx, db.r, kind, all)
}

// Settings lists the live settings of kind inside the transaction, so a
// change and what it reads of the configuration are one view.
func (tx *Tx) Settings(ctx context.Context, kind string) ([]Setting, error) {
	return settings(ctx, tx.tx, kind, false)
}

func settings(ctx context.Context, q queryer, kind string, all bool) ([]Setting, error) {
	rows, err := q.QueryContext(ctx, `
		SELECT kind, name, value, version, origin, updated_at, deleted FROM settings
		WHERE ($1 = '' OR kind = $1) AND ($2 OR deleted = 0) ORDER BY kind, name`, kind, all)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Setting
	for rows.Next() {
		var s Setting
		var value string
		var updated, del int64
		if err := rows.Scan(&s.Kind, &s.Name, &value, &s.Version.Time, &s.Version.Region, &updated, &del); err != nil {
			return nil, err
		}
		s.Value, s.Updated, s.Deleted = json.RawMessage(value), time.UnixMilli(updated), del != 0
		out = append(out, s)
	}
	return out, rows.Err()
}
