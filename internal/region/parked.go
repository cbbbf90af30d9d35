package region

import (
	"context"
	"time"

	"github.com/georeg/georeg/internal/meta"
)

// Park moves peer's cursor past record seq and keeps the record (its
// wire form) to retry apart: it failed for reasons on the peer's side
// (meta.Parked).
func (r *Region) Park(ctx context.Context, peer string, seq int64, record []byte, lastErr string) error {
	now := r.now()
	return r.db.Update(ctx, func(tx *meta.Tx) error {
		if err := tx.Park(ctx, meta.Parked{Peer: peer, Seq: seq, Record: record, ParkedAt: now, NextAt: now, LastErr: lastErr}); err != nil {
			return err
		}
		return tx.SetCursor(ctx, peer, cursorTo(ctx, seq), now)
	})
}

// DueParked returns up to n parked records of peer due for another try.
func (r *Region) DueParked(ctx context.Context, peer string, n int) ([]meta.Parked, error) {
	return r.db.DueParked(ctx, peer, r.now(), n)
}

// ParkedCount returns how many records of peer are parked, and since when
// the oldest.
func (r *Region) ParkedCount(ctx context.Context, peer string) (int64, time.Time, error) {
	return r.db.ParkedCount(ctx, peer)
}

// Unpark forgets a parked record that has applied.
func (r *Region) Unpark(ctx context.Context, peer string, seq int64) error {
	return r.db.Update(ctx, func(tx *meta.Tx) error { return tx.Unpark(ctx, peer, seq) })
}

// ParkedFailed records another failed try of a parked record, the next at
// next.
func (r *Region) ParkedFailed(ctx context.Context, peer string, seq int64, next time.Time, lastErr string, reported bool) error {
	return r.db.Update(ctx, func(tx *meta.Tx) error { return tx.ParkedFailed(ctx, peer, seq, next, lastErr, reported) })
}
