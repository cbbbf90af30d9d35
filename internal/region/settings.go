package region

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// Registry settings (replicas, and later webhooks, locks, users...) are
// versioned data any region can change: a change here gets a version and a
// feed record in one transaction, and peers apply it last-writer-wins, as
// tags. There is no home region.

// PutSetting sets kind/name to value (JSON) and returns its version.
func (r *Region) PutSetting(ctx context.Context, kind, name string, value json.RawMessage) (hlc.Version, error) {
	if !json.Valid(value) {
		return hlc.Version{}, fmt.Errorf("setting %s/%s: value is not JSON", kind, name)
	}
	v, _, err := r.writeSetting(ctx, meta.Setting{Kind: kind, Name: name, Value: value}, "")
	return v, err
}

// DefaultVersion is the version of a default setting proposed at now
// (PutDefaultSetting): below every version a write gets (those start
// around 2^57), and the earlier proposed, the later it orders, so the
// first region's default wins over those of regions started after it.
func DefaultVersion(region string, now time.Time) hlc.Version {
	return hlc.Version{Time: 1<<40 - now.Unix(), Region: region}
}

// PutDefaultSetting sets kind/name to value at DefaultVersion, unless
// this region holds a newer one: a value a region proposes when it starts
// (the first admin user). Every write of kind/name in any region wins
// over it, and so does the default of every region started before: a
// region joining a registry later, with another admin password file,
// resets nothing. It replicates like any setting.
func (r *Region) PutDefaultSetting(ctx context.Context, kind, name string, value json.RawMessage) error {
	if !json.Valid(value) {
		return fmt.Errorf("setting %s/%s: value is not JSON", kind, name)
	}
	_, _, err := r.writeSetting(ctx, meta.Setting{Kind: kind, Name: name, Value: value, Version: DefaultVersion(r.Name(), r.now())}, "default")
	return err
}

// PutSettingAfter sets kind/name to value at the least version after
// read, the version of the value it was derived from: it wins over that
// value, and loses to every write of kind/name made since in any region
// (their versions are past read). For a change a region makes on its
// own account from what it read (its Ready mark), so that an admin's
// change of the same setting made meanwhile elsewhere is never undone by
// it. It reports whether the value was stored (false: a newer write is
// here already; read again).
func (r *Region) PutSettingAfter(ctx context.Context, kind, name string, value json.RawMessage, read hlc.Version) (bool, error) {
	if !json.Valid(value) {
		return false, fmt.Errorf("setting %s/%s: value is not JSON", kind, name)
	}
	_, won, err := r.writeSetting(ctx, meta.Setting{Kind: kind, Name: name, Value: value, Version: hlc.Version{Time: read.Time + 1, Region: r.Name()}}, "")
	return won, err
}

// DeleteSetting deletes kind/name (a tombstone); NAME_UNKNOWN when there is
// no such live setting.
func (r *Region) DeleteSetting(ctx context.Context, kind, name string) (hlc.Version, error) {
	if _, err := r.db.Setting(ctx, kind, name); isNotFound(err) {
		return hlc.Version{}, notSet(kind, name)
	}
	v, _, err := r.writeSetting(ctx, meta.Setting{Kind: kind, Name: name, Deleted: true}, "")
	return v, err
}

// writeSetting stores s, its audit entry (with detail) and its feed
// record in one transaction, at a new version of the clock; or, with
// s.Version set (PutDefaultSetting, PutSettingAfter), at that version
// and only if nothing newer is held. It reports whether s was stored.
func (r *Region) writeSetting(ctx context.Context, s meta.Setting, detail string) (hlc.Version, bool, error) {
	var pinnedRepo, pinnedTag string
	versioned := !s.Version.IsZero() // else a new version, which always wins
	won := false
	defer r.changingRecent(s.Kind)()
	err := r.db.Update(ctx, func(tx *meta.Tx) error {
		if !versioned {
			s.Version = r.clock.Now()
		}
		s.Updated = r.now()
		var err error
		won, err = tx.PutSetting(ctx, s)
		if err != nil || (versioned && !won) {
			return err
		}
		if pinnedRepo, pinnedTag, err = r.pinLock(ctx, tx, s); err != nil {
			return err
		}
		// Who changed the registry's configuration (locks, users, tokens,
		// webhooks, rules): the entry names the setting, never its value.
		outcome := "set"
		if s.Deleted {
			outcome = "deleted"
		}
		if err := r.audit(ctx, tx, AuditConfig, "", s.Kind+"/"+s.Name, "", outcome, detail); err != nil {
			return err
		}
		r.settingHook("writing")
		return r.record(ctx, tx, meta.KindSetting, "", "", s.Name, s.Kind, 0, s.Version)
	})
	r.settingHook("committed")
	if err != nil {
		return hlc.Version{}, false, err
	}
	if versioned && !won {
		return s.Version, false, nil // nothing written
	}
	r.feed.notify()
	if pinnedTag != "" {
		r.cache.invalidate(pinnedRepo, "", pinnedTag)
	}
	r.settingChanged(s)
	return s.Version, won, nil
}

// settingChanged acts on a setting this node just wrote or applied
// (its kind's recent view is dropped by changingRecent).
func (r *Region) settingChanged(s meta.Setting) {
	if s.Kind == PurgeKind {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r.applyPurge(ctx, s)
	}
}

// Setting returns a live setting, or NAME_UNKNOWN.
func (r *Region) Setting(ctx context.Context, kind, name string) (*meta.Setting, error) {
	s, err := r.db.Setting(ctx, kind, name)
	if isNotFound(err) {
		return nil, notSet(kind, name)
	}
	return s, err
}

// notSet says a setting is unknown here, and why that may be so for now.
func notSet(kind, name string) error {
	return ocierr.NameUnknown.Withf("there is no %s named %q in this region's view; a change made in another region arrives within seconds, so retry if it was just made", kind, name)
}

// Settings lists the live settings of kind.
func (r *Region) Settings(ctx context.Context, kind string) ([]meta.Setting, error) {
	return r.db.Settings(ctx, kind, false)
}

// AllSettings lists every setting with its tombstone, for anti-entropy.
func (r *Region) AllSettings(ctx context.Context) ([]meta.Setting, error) {
	return r.db.Settings(ctx, "", true)
}

// ApplySetting applies a setting (or tombstone) from peer's feed,
// last-writer-wins, and moves the peer's cursor.
func (r *Region) ApplySetting(ctx context.Context, peer string, seq int64, s meta.Setting) error {
	if err := r.clock.Admit(s.Version); err != nil {
		return err
	}
	var pinnedRepo, pinnedTag string
	defer r.changingRecent(s.Kind)()
	err := r.db.Update(ctx, func(tx *meta.Tx) error {
		s.Updated = r.now()
		won, err := tx.PutSetting(ctx, s)
		if err != nil {
			return err
		}
		if won {
			if pinnedRepo, pinnedTag, err = r.pinLock(ctx, tx, s); err != nil {
				return err
			}
		}
		r.settingHook("writing")
		return r.setCursor(ctx, tx, peer, seq)
	})
	r.settingHook("committed")
	if err == nil && pinnedTag != "" {
		r.cache.invalidate(pinnedRepo, "", pinnedTag)
	}
	if err == nil {
		r.settingChanged(s)
	}
	return err
}
