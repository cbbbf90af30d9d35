package meta

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"
)

// SetPresence records that region holds manifest d of repo complete since
// at, idempotently (the first time is kept).
func (tx *Tx) SetPresence(ctx context.Context, repo string, d digest.Digest, region string, at time.Time) error {
	if err := tx.writes(repo); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `
		INSERT INTO presence (repo, digest, region, since) VALUES ($1, $2, $3, $4)
		ON CONFLICT (repo, digest, region) DO NOTHING`, repo, d.String(), region, at.UnixMilli())
	return err
}

// Presence returns the regions known to hold manifest d of repo complete,
// with the time each got it.
func (db *DB) Presence(ctx context.Context, repo string, d digest.Digest) (map[string]time.Time, error) {
	return presence(ctx, db.r, repo, d)
}

// Presence is DB.Presence inside the transaction.
func (tx *Tx) Presence(ctx context.Context, repo string, d digest.Digest) (map[string]time.Time, error) {
	return presence(ctx, tx.tx, repo, d)
}

func presence(ctx context.Context, q queryer, repo string, d digest.Digest) (map[string]time.Time, error) {
	rows, err := q.QueryContext(ctx, `SELECT region, since FROM presence WHERE repo = $1 AND digest = $2`, repo, d.String())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var region string
		var since int64
		if err := rows.Scan(&region, &since); err != nil {
			return nil, err
		}
		out[region] = time.UnixMilli(since)
	}
	return out, rows.Err()
}

// FirstAck reports whether this region has not yet acknowledged manifest
// d of repo in its feed, and records that it now does: the caller appends
// the ack record in the same transaction. A manifest is acknowledged once,
// however many times its tag or its record is applied (anti-entropy
// applies them again every round a repository differs).
func (tx *Tx) FirstAck(ctx context.Context, repo string, d digest.Digest, at time.Time) (bool, error) {
	if err := tx.writes(repo); err != nil {
		return false, err
	}
	res, err := tx.exec(ctx, `INSERT INTO acks (repo, digest, at) VALUES ($1, $2, $3)
		ON CONFLICT (repo, digest) DO NOTHING`, repo, d.String(), at.UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// forgetAck forgets that this region acknowledged manifest d of repo: it
// was deleted, and a later push of it is acknowledged anew.
func (tx *Tx) forgetAck(ctx context.Context, repo string, d digest.Digest) error {
	if err := tx.writes(repo); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM acks WHERE repo = $1 AND digest = $2`, repo, d.String())
	return err
}
