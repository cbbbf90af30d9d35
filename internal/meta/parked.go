package meta

import (
	"context"
	"time"
)

// Parked is a feed record of a peer that could not be applied for a while
// for reasons on the peer's side (its content could not be fetched): it
// is retried apart, and the peer's cursor moved past it, so the records
// after it apply meanwhile. Records apply in any order to the same end
// (DESIGN invariant 3), so a parked record applied later changes nothing
// of what the others did.
type Parked struct {
	Peer     string
	Seq      int64
	Record   []byte // the record as the feed carried it (JSON)
	ParkedAt time.Time
	Attempts int
	NextAt   time.Time
	LastErr  string
	Reported bool // replication-failed was sent for it
}

// Park records p, once (a record parked already keeps its row), in the
// transaction that moves the peer's cursor past it.
func (tx *Tx) Park(ctx context.Context, p Parked) error {
	if err := tx.writesRegion("Park"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `
		INSERT INTO parked (peer, seq, record, parked_at, attempts, next_at, last_error, reported)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 0) ON CONFLICT (peer, seq) DO NOTHING`,
		p.Peer, p.Seq, string(p.Record), p.ParkedAt.UnixMilli(), p.Attempts, p.NextAt.UnixMilli(), p.LastErr)
	return err
}

// DueParked returns up to n records of peer parked whose next attempt is
// due at now, oldest first.
func (db *DB) DueParked(ctx context.Context, peer string, now time.Time, n int) ([]Parked, error) {
	rows, err := db.query(ctx, `
		SELECT seq, record, parked_at, attempts, next_at, last_error, reported FROM parked
		WHERE peer = $1 AND next_at <= $2 ORDER BY seq LIMIT $3`, peer, now.UnixMilli(), n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Parked
	for rows.Next() {
		p := Parked{Peer: peer}
		var rec string
		var at, next int64
		var reported int
		if err := rows.Scan(&p.Seq, &rec, &at, &p.Attempts, &next, &p.LastErr, &reported); err != nil {
			return nil, err
		}
		p.Record, p.ParkedAt, p.NextAt, p.Reported = []byte(rec), time.UnixMilli(at), time.UnixMilli(next), reported != 0
		out = append(out, p)
	}
	return out, rows.Err()
}

// ParkedCount returns how many records of peer are parked, and when the
// oldest was (zero when none is).
func (db *DB) ParkedCount(ctx context.Context, peer string) (int64, time.Time, error) {
	var n int64
	var oldest *int64
	err := db.queryRow(ctx, `SELECT COUNT(*), MIN(parked_at) FROM parked WHERE peer = $1`, peer).Scan(&n, &oldest)
	if err != nil || oldest == nil {
		return n, time.Time{}, err
	}
	return n, time.UnixMilli(*oldest), nil
}

// Unpark removes a parked record that has applied.
func (tx *Tx) Unpark(ctx context.Context, peer string, seq int64) error {
	if err := tx.writesRegion("Unpark"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM parked WHERE peer = $1 AND seq = $2`, peer, seq)
	return err
}

// ParkedFailed records another failed attempt of a parked record.
func (tx *Tx) ParkedFailed(ctx context.Context, peer string, seq int64, next time.Time, lastErr string, reported bool) error {
	if err := tx.writesRegion("ParkedFailed"); err != nil {
		return err
	}
	rep := 0
	if reported {
		rep = 1
	}
	_, err := tx.exec(ctx, `UPDATE parked SET attempts = attempts + 1, next_at = $3, last_error = $4, reported = $5
		WHERE peer = $1 AND seq = $2`, peer, seq, next.UnixMilli(), lastErr, rep)
	return err
}
