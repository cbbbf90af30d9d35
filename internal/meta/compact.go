package meta

import (
	"context"
)

// feedFloorState is the region_state row holding the seq through which
// the region's feed was compacted (deleted): a peer asking for records
// after an earlier seq cannot get them all.
const feedFloorState = "feed_floor"

// feedFloorBytesState is the region_state row holding the running total
// of blob bytes through the floor: the feed's byte count before any seq
// the compacted records no longer tell (FeedBytes).
const feedFloorBytesState = "feed_floor_bytes"

// FeedFloor returns the seq through which the feed was compacted (0:
// never).
func (db *DB) FeedFloor(ctx context.Context) (int64, error) {
	v, _, err := db.RegionState(ctx, feedFloorState)
	return v, err
}

// CompactFeed deletes up to limit of the oldest feed records with seq at
// most through, never the newest record (its running byte total carries
// the feed's), and raises the floor to what it deleted. It returns how
// many it deleted and the floor.
func (tx *Tx) CompactFeed(ctx context.Context, through int64, limit int) (int64, int64, error) {
	if err := tx.writesRegion("CompactFeed"); err != nil {
		return 0, 0, err
	}
	var head, floor int64
	if err := tx.queryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM feed`).Scan(&head); err != nil {
		return 0, 0, err
	}
	if err := tx.queryRow(ctx, `SELECT COALESCE((SELECT value FROM region_state WHERE name = $1), 0)`, feedFloorState).Scan(&floor); err != nil {
		return 0, 0, err
	}
	through = min(through, head-1)
	if through <= floor {
		return 0, floor, nil
	}
	var upto int64
	if err := tx.queryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM (SELECT seq FROM feed WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3) AS s`,
		floor, through, limit).Scan(&upto); err != nil {
		return 0, 0, err
	}
	if upto == 0 { // no record left between the floor and through
		upto = through
	}
	var floorBytes int64
	if err := tx.queryRow(ctx, `SELECT COALESCE((SELECT blob_bytes FROM feed WHERE seq <= $1 ORDER BY seq DESC LIMIT 1), 0)`, upto).Scan(&floorBytes); err != nil {
		return 0, 0, err
	}
	if floorBytes > 0 {
		if err := tx.SetRegionState(ctx, feedFloorBytesState, floorBytes); err != nil {
			return 0, 0, err
		}
	}
	res, err := tx.exec(ctx, `DELETE FROM feed WHERE seq <= $1`, upto)
	if err != nil {
		return 0, 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, 0, err
	}
	return n, upto, tx.SetRegionState(ctx, feedFloorState, upto)
}
