package meta

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
)

// Delivery states.
const (
	DeliveryPending   = "pending"   // to be sent (again) at Next
	DeliveryDelivered = "delivered" // the receiver answered 2xx
	DeliveryFailed    = "failed"    // retried for the whole retry window without a 2xx
	DeliveryCanceled  = "canceled"  // its webhook was deleted (or deleted and created again) before it was delivered
)

// Delivery is one event for one webhook in a region's outbox, with the
// outcome of its last attempt: the outbox and the delivery log are one
// table.
type Delivery struct {
	ID         int64         `json:"id"`
	EventID    string        `json:"eventId"`
	Webhook    string        `json:"webhook"`
	Action     string        `json:"action"`
	Payload    []byte        `json:"-"` // the event, JSON
	Created    time.Time     `json:"created"`
	Next       time.Time     `json:"nextAttempt,omitzero"`
	Attempts   int           `json:"attempts"`
	State      string        `json:"state"`
	StatusCode int           `json:"statusCode,omitempty"`
	Latency    time.Duration `json:"latencyNs,omitempty"`
	Error      string        `json:"error,omitempty"`
	Updated    time.Time     `json:"updated"`
	// WebhookCreated is the creation time of the webhook it was queued for
	// (zero for deliveries queued before it was recorded).
	WebhookCreated time.Time `json:"-"`
}

const deliveryColumns = `id, event_id, webhook, action, payload, created_at, next_at, attempts, state, status_code, latency_ms, error, updated_at, webhook_created`

// EnqueueDelivery adds d to the outbox, pending and due at once, in the
// transaction of the change that caused it.
func (tx *Tx) EnqueueDelivery(ctx context.Context, d Delivery) error {
	_, err := tx.exec(ctx, `
		INSERT INTO webhook_deliveries (event_id, webhook, action, payload, created_at, next_at, state, updated_at, webhook_created)
		VALUES ($1, $2, $3, $4, $5, $5, $6, $5, $7)`,
		d.EventID, d.Webhook, d.Action, d.Payload, d.Created.UnixMilli(), DeliveryPending, d.WebhookCreated.UnixMilli())
	tx.enqueued = tx.enqueued || err == nil
	return err
}

// ClaimDeliveries returns up to n pending deliveries due at now, oldest
// first, and moves their next attempt to now+lease: nobody else picks them
// up while they are being sent, and a sender that died leaves them due
// again when the lease ends. It and the other writes of deliveries below
// run in the deliveries' scope (UpdateDeliveries: one at a time in the
// region, beside repository writes, which only add deliveries) or a
// region-wide write.
func (tx *Tx) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, n int) ([]Delivery, error) {
	if err := tx.writesBookkeeping(scopeDeliveries, "ClaimDeliveries"); err != nil {
		return nil, err
	}
	out, err := queryDeliveries(ctx, tx.tx, `SELECT `+deliveryColumns+` FROM webhook_deliveries
		WHERE state = $1 AND next_at <= $2 ORDER BY next_at, id LIMIT $3`, DeliveryPending, now.UnixMilli(), n)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Next = now.Add(lease)
		if _, err := tx.exec(ctx, `UPDATE webhook_deliveries SET next_at = $1 WHERE id = $2`,
			out[i].Next.UnixMilli(), out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// FinishDelivery records an attempt on d: its outcome (d.State,
// d.StatusCode, d.Latency, d.Error), the attempt count and, when still
// pending, d.Next.
func (tx *Tx) FinishDelivery(ctx context.Context, d Delivery) error {
	if err := tx.writesBookkeeping(scopeDeliveries, "FinishDelivery"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `
		UPDATE webhook_deliveries SET state = $1, next_at = $2, attempts = attempts + 1, status_code = $3,
			latency_ms = $4, error = $5, updated_at = $6 WHERE id = $7`,
		d.State, d.Next.UnixMilli(), d.StatusCode, d.Latency.Milliseconds(), d.Error, d.Updated.UnixMilli(), d.ID)
	return err
}

// HoldDelivery puts d back with its state, next attempt and error, without
// counting an attempt (its webhook is disabled).
func (tx *Tx) HoldDelivery(ctx context.Context, d Delivery) error {
	if err := tx.writesBookkeeping(scopeDeliveries, "HoldDelivery"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `
		UPDATE webhook_deliveries SET state = $1, next_at = $2, error = $3, updated_at = $4 WHERE id = $5`,
		d.State, d.Next.UnixMilli(), d.Error, d.Updated.UnixMilli(), d.ID)
	return err
}

// CancelDelivery marks d canceled (its webhook is gone).
func (tx *Tx) CancelDelivery(ctx context.Context, id int64, now time.Time) error {
	if err := tx.writesBookkeeping(scopeDeliveries, "CancelDelivery"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `UPDATE webhook_deliveries SET state = $1, updated_at = $2 WHERE id = $3`,
		DeliveryCanceled, now.UnixMilli(), id)
	return err
}

// PruneDeliveries removes finished deliveries last updated before t.
func (tx *Tx) PruneDeliveries(ctx context.Context, before time.Time) error {
	if err := tx.writesBookkeeping(scopeDeliveries, "PruneDeliveries"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM webhook_deliveries WHERE state <> $1 AND updated_at < $2`,
		DeliveryPending, before.UnixMilli())
	return err
}

// NextDelivery returns when the earliest pending delivery is due; false
// when none is pending.
func (db *DB) NextDelivery(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := db.queryRow(ctx, `SELECT MIN(next_at) FROM webhook_deliveries WHERE state = $1`, DeliveryPending).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, false, err
	}
	return time.UnixMilli(next.Int64), true, nil
}

// Deliveries lists webhook's deliveries, newest first, up to n.
func (db *DB) Deliveries(ctx context.Context, webhook string, n int) ([]Delivery, error) {
	return queryDeliveries(ctx, db.r, `SELECT `+deliveryColumns+` FROM webhook_deliveries
		WHERE webhook = $1 ORDER BY id DESC LIMIT $2`, webhook, n)
}

// GetDelivery returns one delivery, or ErrNotFound.
func (db *DB) GetDelivery(ctx context.Context, id int64) (*Delivery, error) {
	out, err := queryDeliveries(ctx, db.r, `SELECT `+deliveryColumns+` FROM webhook_deliveries WHERE id = $1`, id)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return &out[0], nil
}

// LastDeliveryID returns the id of the newest delivery (0 for none), in
// the transaction that enqueued it.
func (tx *Tx) LastDeliveryID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	err := tx.queryRow(ctx, `SELECT MAX(id) FROM webhook_deliveries`).Scan(&id)
	return id.Int64, err
}

func queryDeliveries(ctx context.Context, q queryer, query string, args ...any) ([]Delivery, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var created, next, latency, updated, hookCreated int64
		if err := rows.Scan(&d.ID, &d.EventID, &d.Webhook, &d.Action, &d.Payload, &created, &next, &d.Attempts,
			&d.State, &d.StatusCode, &latency, &d.Error, &updated, &hookCreated); err != nil {
			return nil, err
		}
		d.Created, d.Updated = time.UnixMilli(created), time.UnixMilli(updated)
		if hookCreated != 0 {
			d.WebhookCreated = time.UnixMilli(hookCreated)
		}
		d.Latency = time.Duration(latency) * time.Millisecond
		if d.State == DeliveryPending {
			d.Next = time.UnixMilli(next)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// AddPendingEverywhere keeps event (a push's, JSON) until manifest d of
// repo is present in every region; a pending one for d is kept as it is.
func (tx *Tx) AddPendingEverywhere(ctx context.Context, repo string, d digest.Digest, event []byte, now time.Time) error {
	if err := tx.writes(repo); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `
		INSERT INTO everywhere_pending (repo, digest, event, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (repo, digest) DO NOTHING`, repo, d.String(), event, now.UnixMilli())
	return err
}

// PendingEverywhere returns the pending event of repo's manifest d;
// ErrNotFound when there is none.
func (tx *Tx) PendingEverywhere(ctx context.Context, repo string, d digest.Digest) ([]byte, error) {
	var event []byte
	err := tx.queryRow(ctx, `SELECT event FROM everywhere_pending WHERE repo = $1 AND digest = $2`,
		repo, d.String()).Scan(&event)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return event, err
}

// DeletePendingEverywhere drops the pending event of repo's manifest d.
func (tx *Tx) DeletePendingEverywhere(ctx context.Context, repo string, d digest.Digest) error {
	if err := tx.writes(repo); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM everywhere_pending WHERE repo = $1 AND digest = $2`, repo, d.String())
	return err
}

// PendingEverywhereList returns up to n (repo, digest) pairs still waiting
// to be everywhere, oldest first.
func (db *DB) PendingEverywhereList(ctx context.Context, n int) ([][2]string, error) {
	rows, err := db.query(ctx, `SELECT repo, digest FROM everywhere_pending ORDER BY created_at LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var p [2]string
		if err := rows.Scan(&p[0], &p[1]); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
