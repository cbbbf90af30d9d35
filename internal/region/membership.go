package region

import (
	"context"

	"github.com/georeg/georeg/internal/meta"
)

// readyFlag marks a region that has been Ready once (region_state): after
// a restart it is routed to as soon as it has caught up with the peers
// that answer, rather than waiting for one that is down.
const readyFlag = "ready"

// EverReady reports whether this region has been Ready once.
func (r *Region) EverReady(ctx context.Context) (bool, error) {
	v, ok, err := r.db.RegionState(ctx, readyFlag)
	return ok && v == 1, err
}

// MarkReady records, durably, that this region has been Ready.
func (r *Region) MarkReady(ctx context.Context) error {
	return r.db.Update(ctx, func(tx *meta.Tx) error { return tx.SetRegionState(ctx, readyFlag, 1) })
}

// SettingRecord returns a setting's value or tombstone; found false when
// this region has never heard of it.
func (r *Region) SettingRecord(ctx context.Context, kind, name string) (*meta.Setting, bool, error) {
	s, err := r.db.SettingRecord(ctx, kind, name)
	if isNotFound(err) {
		return nil, false, nil
	}
	return s, err == nil, err
}
