package region

import (
	"context"

	"github.com/georeg/georeg/internal/meta"
)

// FeedFloor is the seq through which this region's feed was compacted (0:
// never): a peer asking for records before it is answered FEED_COMPACTED.
func (r *Region) FeedFloor(ctx context.Context) (int64, error) { return r.db.FeedFloor(ctx) }

// compactBatch bounds the records one compaction transaction deletes.
const compactBatch = 10_000

// CompactFeed deletes this region's feed records through seq through
// (never the newest), compactBatch at a time, at most maxBatches
// transactions; it returns how many it deleted and the floor reached.
func (r *Region) CompactFeed(ctx context.Context, through int64, maxBatches int) (int64, int64, error) {
	var total, floor int64
	for range maxBatches {
		var n int64
		err := r.db.Update(ctx, func(tx *meta.Tx) error {
			var err error
			n, floor, err = tx.CompactFeed(ctx, through, compactBatch)
			return err
		})
		if err != nil {
			return total, floor, err
		}
		total += n
		if n == 0 || floor >= through {
			break
		}
	}
	return total, floor, nil
}
