package meta

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"
)

// Link is a blob linked in a repository.
type Link struct {
	Digest  digest.Digest
	Size    int64
	Created time.Time
}

// Links returns repo's blob links made before before, in the transaction
// (garbage collection decides and unlinks in one transaction per
// repository, so no manifest commits in between).
func (tx *Tx) Links(ctx context.Context, repo string, before time.Time) ([]Link, error) {
	rows, err := tx.query(ctx, `SELECT digest, size, created_at FROM blobs WHERE repo = $1 AND created_at < $2`,
		repo, before.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Link
	for rows.Next() {
		var l Link
		var d string
		var created int64
		if err := rows.Scan(&d, &l.Size, &created); err != nil {
			return nil, err
		}
		l.Digest, l.Created = digest.Digest(d), time.UnixMilli(created)
		out = append(out, l)
	}
	return out, rows.Err()
}

// Payload is a live manifest's digest, media type and bytes.
type Payload struct {
	Digest    digest.Digest
	MediaType string
	Bytes     []byte
}

// LivePayloads returns the live manifests of repo, in the transaction.
func (tx *Tx) LivePayloads(ctx context.Context, repo string) ([]Payload, error) {
	return tx.payloads(ctx, `SELECT digest, media_type, payload FROM manifests WHERE repo = $1 AND deleted = 0`, repo)
}

// payloads runs q, which selects digest, media type and payload, in tx.
func (tx *Tx) payloads(ctx context.Context, q string, args ...any) ([]Payload, error) {
	rows, err := tx.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Payload
	for rows.Next() {
		var p Payload
		var d string
		if err := rows.Scan(&d, &p.MediaType, &p.Bytes); err != nil {
			return nil, err
		}
		p.Digest = digest.Digest(d)
		out = append(out, p)
	}
	return out, rows.Err()
}

// Linked reports whether any repository links blob d, in the transaction.
func (tx *Tx) Linked(ctx context.Context, d digest.Digest) (bool, error) {
	var n int
	err := tx.queryRow(ctx, `SELECT COUNT(*) FROM blobs WHERE digest = $1`, d.String()).Scan(&n)
	return n > 0, err
}

// LinkCount returns how many repositories link blob d.
func (db *DB) LinkCount(ctx context.Context, d digest.Digest) (int, error) {
	var n int
	err := db.queryRow(ctx, `SELECT COUNT(*) FROM blobs WHERE digest = $1`, d.String()).Scan(&n)
	return n, err
}
