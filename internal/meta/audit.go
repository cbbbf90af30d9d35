package meta

import (
	"context"
	"time"
)

// AuditEntry is one line of a region's audit log: a repository change or
// a login, who made it from where, and how it ended.
type AuditEntry struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"` // "" for anonymous
	Action    string    `json:"action"`
	Repo      string    `json:"repository,omitempty"`
	Reference string    `json:"reference,omitempty"`
	Digest    string    `json:"digest,omitempty"`
	Client    string    `json:"client,omitempty"`
	RequestID string    `json:"requestId,omitempty"`
	Outcome   string    `json:"outcome"`
	Detail    string    `json:"detail,omitempty"`
}

// AppendAudit adds e to the audit log, in the transaction of the change
// it records.
func (tx *Tx) AppendAudit(ctx context.Context, e AuditEntry) error {
	_, err := tx.exec(ctx, `
		INSERT INTO audit (at, actor, action, repo, reference, digest, client, request_id, outcome, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		e.At.UnixMilli(), e.Actor, e.Action, e.Repo, e.Reference, e.Digest, e.Client, e.RequestID, e.Outcome, e.Detail)
	return err
}

// Audit returns up to n entries at or after since, newest first.
func (db *DB) Audit(ctx context.Context, since time.Time, n int) ([]AuditEntry, error) {
	rows, err := db.query(ctx, `
		SELECT id, at, actor, action, repo, reference, digest, client, request_id, outcome, detail
		FROM audit WHERE at >= $1 ORDER BY id DESC LIMIT $2`, since.UnixMilli(), n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Repo, &e.Reference, &e.Digest, &e.Client, &e.RequestID, &e.Outcome, &e.Detail); err != nil {
			return nil, err
		}
		e.At = time.UnixMilli(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// PruneAudit removes entries older than before.
func (tx *Tx) PruneAudit(ctx context.Context, before time.Time) error {
	if err := tx.writesRegion("PruneAudit"); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM audit WHERE at < $1`, before.UnixMilli())
	return err
}
