package region

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// Snapshot reads this region's replicated state for a region that joins
// (meta.DB.Snapshot); the handler serves it only while the region is
// Ready (feed.SnapshotHandler), in format (meta.SnapshotFormatServed). A
// retired region serves none.
func (r *Region) Snapshot(ctx context.Context, format int, header func(meta.SnapshotHeader) error, emit func(*meta.SnapshotRepo) error) error {
	if r.Retired() {
		return ocierr.Unavailable.Withf("region %s was deleted from the registry (retired): it serves no snapshot", r.cfg.Name)
	}
	return r.db.Snapshot(ctx, r.cfg.Name, format, header, emit)
}

// Empty reports whether this region holds nothing replicated yet (no
// repository, no peer's feed applied): a region that joins from a
// snapshot.
func (r *Region) Empty(ctx context.Context) (bool, error) { return r.db.Empty(ctx) }

// LoadSnapshotRepo stores one repository of a peer's snapshot, whose blob
// bytes the caller made present first, in one transaction: none of its
// manifests is visible before its blob links and child manifests. A row
// held here already is replaced only by a later version. The clock moves
// past the newest version loaded, as for any replicated write; a version
// further ahead than the max drift refuses the whole repository
// (hlc.ErrFuture).
func (r *Region) LoadSnapshotRepo(ctx context.Context, sr *meta.SnapshotRepo) error {
	for _, tr := range sr.Tables {
		vi, oi := -1, -1
		for i, c := range tr.Columns {
			switch c {
			case "version":
				vi = i
			case "origin":
				oi = i
			}
		}
		if vi < 0 || oi < 0 {
			continue
		}
		for _, row := range tr.Rows {
			if vi >= len(row) || oi >= len(row) {
				continue // refused by the load, with its reason
			}
			n, ok := row[vi].(json.Number)
			origin, _ := row[oi].(string)
			if t, err := n.Int64(); ok && err == nil {
				// A version further ahead than the max drift is refused,
				// as a feed record's would be: the join fails and the
				// feeds are followed from the start instead.
				if err := r.clock.Admit(hlc.Version{Time: t, Region: origin}); err != nil {
					return fmt.Errorf("snapshot of %s: %w", sr.Repo, err)
				}
			}
		}
	}
	err := r.db.Update(ctx, func(tx *meta.Tx) error {
		if err := tx.LoadSnapshotRepo(ctx, sr, r.cfg.Name, r.now()); err != nil {
			return err
		}
		return r.unlinkDeleted(ctx, tx, sr.Repo)
	})
	if err == nil {
		r.cache.invalidateRepo(sr.Repo)
	}
	return err
}

// unlinkDeleted applies to repo's rows, once a snapshot is loaded, what
// ApplyBlobDelete applies to one record: a blob link no newer than a
// delete of it known here goes, unless a live manifest of repo uses the
// blob. Rows load table by table, each by last-writer-wins against rows
// of the same table only, so a peer's link older than this region's
// tombstone (a delete here the peer had not seen when it made its
// snapshot) would otherwise come back and stay: the cause of a blob
// served again after it was deleted (invariant 9).
func (r *Region) unlinkDeleted(ctx context.Context, tx *meta.Tx, repo string) error {
	ds, err := tx.LinksOlderThanTheirDeletes(ctx, repo)
	if err != nil {
		return err
	}
	for _, d := range ds {
		m, err := usedBy(ctx, tx, repo, d)
		if err != nil {
			return err
		}
		if m != "" {
			continue
		}
		if _, err := tx.UnlinkBlob(ctx, repo, d); err != nil {
			return err
		}
	}
	return nil
}

// StartFeedsAt records that this region has applied each peer's feed up
// to the position given (the snapshot it loaded reflects them): it
// follows them from there. A cursor only moves forward.
func (r *Region) StartFeedsAt(ctx context.Context, positions map[string]int64) error {
	return r.db.Update(ctx, func(tx *meta.Tx) error {
		for peer, seq := range positions {
			if peer == r.cfg.Name || seq <= 0 {
				continue
			}
			if err := tx.SetCursor(ctx, peer, seq, r.now()); err != nil {
				return err
			}
		}
		return nil
	})
}
