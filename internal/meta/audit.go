package meta

import (
	"context"
	"fmt"
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
// it records. Entries are inserted at the transaction's end
// (writeAudit), in the order they were added: on PostgreSQL one
// statement for a whole batch of writes. Nothing in a write transaction
// reads the log.
func (tx *Tx) AppendAudit(ctx context.Context, e AuditEntry) error {
	tx.audits = append(tx.audits, e)
	return nil
}

// writeAudit inserts the entries the transaction's writes added.
func (tx *Tx) writeAudit(ctx context.Context) error {
	if len(tx.audits) == 0 {
		return nil
	}
	if tx.dialect == postgres {
		n := len(tx.audits)
		at := make([]int64, n)
		actor, action, repo, ref, dgst, client, reqID, outcome, detail := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		for i, e := range tx.audits {
			at[i], actor[i], action[i], repo[i], ref[i], dgst[i] = e.At.UnixMilli(), e.Actor, e.Action, e.Repo, e.Reference, e.Digest
			client[i], reqID[i], outcome[i], detail[i] = e.Client, e.RequestID, e.Outcome, e.Detail
		}
		if _, err := tx.exec(ctx, `
			INSERT INTO audit (at, actor, action, repo, reference, digest, client, request_id, outcome, detail)
			SELECT e.at, e.actor, e.action, e.repo, e.reference, e.digest, e.client, e.request_id, e.outcome, e.detail
			FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
				WITH ORDINALITY AS e(at, actor, action, repo, reference, digest, client, request_id, outcome, detail, n)
			ORDER BY e.n`,
			at, actor, action, repo, ref, dgst, client, reqID, outcome, detail); err != nil {
			return fmt.Errorf("write the audit log: %w", err)
		}
		tx.audits = nil
		return nil
	}
	for _, e := range tx.audits {
		if _, err := tx.exec(ctx, `
			INSERT INTO audit (at, actor, action, repo, reference, digest, client, request_id, outcome, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			e.At.UnixMilli(), e.Actor, e.Action, e.Repo, e.Reference, e.Digest, e.Client, e.RequestID, e.Outcome, e.Detail); err != nil {
			return fmt.Errorf("write the audit log: %w", err)
		}
	}
	tx.audits = nil
	return nil
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
	if err := tx.writeAudit(ctx); err != nil { // entries added before it are pruned as if written
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM audit WHERE at < $1`, before.UnixMilli())
	return err
}
