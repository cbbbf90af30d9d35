package meta

import (
	"context"
	"time"
)

// Traffic is bytes of one kind (served, received, ...) with one peer
// ("" for clients), summed.
type Traffic struct {
	Kind  string
	Peer  string
	Bytes int64
}

// AddTraffic adds n bytes of kind with peer to node's count for the hour
// holding at, in a write of the traffic scope (UpdateTraffic) or a
// region-wide one; nodes add to their own rows.
func (tx *Tx) AddTraffic(ctx context.Context, at time.Time, node, kind, peer string, n int64) error {
	if err := tx.writesBookkeeping(scopeTraffic, "AddTraffic"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `INSERT INTO traffic (hour, node, kind, peer, bytes) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (hour, node, kind, peer) DO UPDATE SET bytes = traffic.bytes + excluded.bytes`,
		at.Truncate(time.Hour).Unix(), node, kind, peer, n)
	return err
}

// TrafficSince sums every node's traffic of the hours from since's on,
// by kind and peer.
func (db *DB) TrafficSince(ctx context.Context, since time.Time) ([]Traffic, error) {
	rows, err := db.query(ctx, `SELECT kind, peer, SUM(bytes) FROM traffic WHERE hour >= $1 GROUP BY kind, peer ORDER BY kind, peer`,
		since.Truncate(time.Hour).Unix())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Traffic
	for rows.Next() {
		var t Traffic
		if err := rows.Scan(&t.Kind, &t.Peer, &t.Bytes); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
