package meta

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
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
	tx.settingsRead = settingsRead{}
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
// change and what it reads of the configuration are one view. What a
// transaction read of the settings it keeps until it writes a setting:
// settings are written only by region-wide writes, which no other
// transaction runs while this one holds its locks (scope.go), so a batch
// of pushes reads the webhooks once (batch.go).
func (tx *Tx) Settings(ctx context.Context, kind string) ([]Setting, error) {
	if got, ok := tx.settingsRead.lists[kind]; ok {
		return slices.Clone(got), nil
	}
	got, err := settings(ctx, tx.tx, kind, false)
	if err != nil {
		return nil, err
	}
	if tx.settingsRead.lists == nil {
		tx.settingsRead.lists = map[string][]Setting{}
	}
	tx.settingsRead.lists[kind] = got
	return slices.Clone(got), nil
}

// SettingsNamed returns the live settings of kind among names, by name,
// in one query (names not there, or tombstones, are left out).
func (tx *Tx) SettingsNamed(ctx context.Context, kind string, names ...string) (map[string]*Setting, error) {
	out := map[string]*Setting{}
	var ask []string
	for _, name := range names {
		if s, ok := tx.settingsRead.named[[2]string{kind, name}]; ok {
			if s != nil {
				out[name] = s
			}
		} else if !slices.Contains(ask, name) {
			ask = append(ask, name)
		}
	}
	if len(ask) == 0 {
		return out, nil
	}
	args, in := []any{kind}, make([]string, len(ask))
	for i, name := range ask {
		args, in[i] = append(args, name), fmt.Sprintf("$%d", i+2)
	}
	rows, err := tx.query(ctx, `SELECT name, value, version, origin, updated_at, deleted FROM settings
		WHERE kind = $1 AND name IN (`+strings.Join(in, ", ")+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := map[string]*Setting{}
	for rows.Next() {
		s := &Setting{Kind: kind}
		var value string
		var updated, del int64
		if err := rows.Scan(&s.Name, &value, &s.Version.Time, &s.Version.Region, &updated, &del); err != nil {
			return nil, err
		}
		s.Value, s.Updated, s.Deleted = json.RawMessage(value), time.UnixMilli(updated), del != 0
		if !s.Deleted {
			found[s.Name] = s
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if tx.settingsRead.named == nil {
		tx.settingsRead.named = map[[2]string]*Setting{}
	}
	for _, name := range ask {
		s := found[name] // nil: none
		tx.settingsRead.named[[2]string{kind, name}] = s
		if s != nil {
			out[name] = s
		}
	}
	return out, nil
}

// settingsRead is what a transaction read of the settings (Settings,
// SettingsNamed): the lists of live settings by kind, and live settings
// by kind and name (nil: none).
type settingsRead struct {
	lists map[string][]Setting
	named map[[2]string]*Setting
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
