package meta

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Presence: which regions hold a manifest complete, kept in O(regions)
// rows per region rather than one acknowledgement per manifest per
// region (docs/design.md "Acknowledgements and image status").
//
// A presence row (repo, digest, region, since, seq) says region holds the
// manifest since since; when seq > 0, it also says every region that has
// applied region's feed through seq holds it (a mark: seq is the record
// after which the manifest is complete, its tag applied, in any region
// that follows that feed in order). Each region publishes how far it has
// applied every other region's feed (AppliedMarks, through feed stats),
// and every region keeps what its peers published (peer_applied), so
// where an image is is computed from the rows and those marks.

// SetPresence records that region holds manifest d of repo complete since
// at and, with seq > 0, that so does every region that applied region's
// feed through seq. The first row is kept; a mark is added to a row that
// had none.
func (tx *Tx) SetPresence(ctx context.Context, repo string, d digest.Digest, region string, at time.Time, seq int64) error {
	return tx.SetPresences(ctx, repo, d, at, Held{Region: region, Seq: seq})
}

// Held is one region's row of SetPresences: it holds the manifest and,
// with Seq > 0, so does every region that applied its feed through Seq.
type Held struct {
	Region string
	Seq    int64
}

// SetPresences is SetPresence for several regions at once, in one
// statement (a replicated manifest is held here and at the peer it came
// from: one round trip, not two). A region named twice is one row with
// the higher mark, as SetPresence one after the other would leave it.
func (tx *Tx) SetPresences(ctx context.Context, repo string, d digest.Digest, at time.Time, held ...Held) error {
	if err := tx.writes(repo); err != nil {
		return err
	}
	held = onePerRegion(held)
	if len(held) == 0 {
		return nil
	}
	args := []any{repo, d.String(), at.UnixMilli()}
	var rows strings.Builder
	for i, h := range held {
		if i > 0 {
			rows.WriteString(", ")
		}
		fmt.Fprintf(&rows, "($1, $2, $%d, $3, $%d)", len(args)+1, len(args)+2)
		args = append(args, h.Region, h.Seq)
	}
	_, err := tx.exec(ctx, `
		INSERT INTO presence (repo, digest, region, since, seq) VALUES `+rows.String()+`
		ON CONFLICT (repo, digest, region) DO UPDATE SET seq = excluded.seq
		WHERE presence.seq = 0 AND excluded.seq > 0`, args...)
	return err
}

// onePerRegion merges the rows of held that name the same region (a
// statement may upsert a row once), keeping the higher mark.
func onePerRegion(held []Held) []Held {
	out := make([]Held, 0, len(held))
	for _, h := range held {
		i := slices.IndexFunc(out, func(o Held) bool { return o.Region == h.Region })
		if i < 0 {
			out = append(out, h)
		} else if h.Seq > out[i].Seq {
			out[i].Seq = h.Seq
		}
	}
	return out
}

// MarkPresence records, in the transaction that appended this region's
// feed records of a push, that region (this one) holds manifest d of repo
// and that every region that applies its feed through the last record
// appended so far holds it too. On PostgreSQL the feed is numbered at the
// end of the transaction, and the mark with it (sequence).
func (tx *Tx) MarkPresence(ctx context.Context, repo string, d digest.Digest, region string, at time.Time) error {
	if tx.dialect == postgres {
		if err := tx.SetPresence(ctx, repo, d, region, at, 0); err != nil {
			return err
		}
		tx.marks = append(tx.marks, pendingMark{repo: repo, digest: d.String(), region: region, record: len(tx.feed)})
		return nil
	}
	return tx.SetPresence(ctx, repo, d, region, at, tx.lastSeq)
}

// pendingMark is a MarkPresence whose feed record is numbered at the end
// of the transaction (PostgreSQL): record is how many records the
// transaction had appended then (the mark is the last of them).
type pendingMark struct {
	repo, digest, region string
	record               int
}

// ForgetPresence forgets where manifest d of repo was: it was deleted, and
// a later push of it is marked anew.
func (tx *Tx) ForgetPresence(ctx context.Context, repo string, d digest.Digest) error {
	if err := tx.writes(repo); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM presence WHERE repo = $1 AND digest = $2`, repo, d.String())
	return err
}

// PresenceRow is one row of presence.
type PresenceRow struct {
	Region string
	Since  time.Time
	Seq    int64 // 0: no mark
}

// AppliedMark is how far region has applied origin's feed, as region
// published it and this region last heard (Updated).
type AppliedMark struct {
	Seq     int64
	Updated time.Time // when the mark last moved
	Heard   time.Time // when region last published its marks (as recorded: see SetPeerApplied)
}

// Presence returns the regions known to hold manifest d of repo complete,
// with the time each got it (or, for a region known through its applied
// mark, when this region learned it had).
func (db *DB) Presence(ctx context.Context, repo string, d digest.Digest) (map[string]time.Time, error) {
	return presence(ctx, db.r, repo, d)
}

// Presence is DB.Presence inside the transaction.
func (tx *Tx) Presence(ctx context.Context, repo string, d digest.Digest) (map[string]time.Time, error) {
	return presence(ctx, tx.tx, repo, d)
}

func presence(ctx context.Context, q queryer, repo string, d digest.Digest) (map[string]time.Time, error) {
	rows, err := q.QueryContext(ctx, `SELECT region, since, seq FROM presence WHERE repo = $1 AND digest = $2`, repo, d.String())
	if err != nil {
		return nil, err
	}
	var held []PresenceRow
	marked := false
	for rows.Next() {
		var p PresenceRow
		var since int64
		if err := rows.Scan(&p.Region, &since, &p.Seq); err != nil {
			rows.Close()
			return nil, err
		}
		p.Since = time.UnixMilli(since)
		marked = marked || p.Seq > 0
		held = append(held, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var applied map[string]map[string]AppliedMark
	if marked {
		if applied, err = peerApplied(ctx, q); err != nil {
			return nil, err
		}
	}
	return Present(held, applied), nil
}

// Present is where a manifest is, from its presence rows and the applied
// marks peers published (region -> origin -> mark): a row's region, and
// every region that applied a marked row's region's feed through its
// mark.
func Present(held []PresenceRow, applied map[string]map[string]AppliedMark) map[string]time.Time {
	out := map[string]time.Time{}
	for _, p := range held {
		out[p.Region] = p.Since
	}
	for _, p := range held {
		if p.Seq <= 0 {
			continue
		}
		for region, marks := range applied {
			if _, ok := out[region]; ok {
				continue
			}
			if m, ok := marks[p.Region]; ok && m.Seq >= p.Seq {
				out[region] = m.Updated
			}
		}
	}
	return out
}

// SetPeerApplied records how far region has applied each origin's feed,
// as it published it: a mark only moves forward. It reports whether any
// moved.
func (tx *Tx) SetPeerApplied(ctx context.Context, region string, marks map[string]int64, now time.Time) (bool, error) {
	if err := tx.writesRegion("SetPeerApplied"); err != nil {
		return false, err
	}
	// Heard from now, whether or not a mark moved.
	if _, err := tx.exec(ctx, `UPDATE peer_applied SET heard_at = $2 WHERE region = $1`, region, now.UnixMilli()); err != nil {
		return false, err
	}
	moved := false
	for origin, seq := range marks {
		res, err := tx.exec(ctx, `
			INSERT INTO peer_applied (region, origin, seq, updated_at, heard_at) VALUES ($1, $2, $3, $4, $4)
			ON CONFLICT (region, origin) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at
			WHERE excluded.seq > peer_applied.seq`, region, origin, seq, now.UnixMilli())
		if err != nil {
			return false, err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			moved = true
		}
	}
	return moved, nil
}

// PeerApplied returns what every peer published of how far it applied
// each origin's feed (region -> origin -> mark).
func (db *DB) PeerApplied(ctx context.Context) (map[string]map[string]AppliedMark, error) {
	return peerApplied(ctx, db.r)
}

func peerApplied(ctx context.Context, q queryer) (map[string]map[string]AppliedMark, error) {
	rows, err := q.QueryContext(ctx, `SELECT region, origin, seq, updated_at, heard_at FROM peer_applied`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[string]AppliedMark{}
	for rows.Next() {
		var region, origin string
		var m AppliedMark
		var updated, heard int64
		if err := rows.Scan(&region, &origin, &m.Seq, &updated, &heard); err != nil {
			return nil, err
		}
		m.Updated, m.Heard = time.UnixMilli(updated), time.UnixMilli(max(heard, updated))
		if out[region] == nil {
			out[region] = map[string]AppliedMark{}
		}
		out[region][origin] = m
	}
	return out, rows.Err()
}

// AppliedMarks returns how far this region has applied each peer's feed
// in order: its cursor, or just before the oldest record of that peer
// parked here (a parked record is passed, not applied), what it
// publishes to its peers.
func (db *DB) AppliedMarks(ctx context.Context) (map[string]int64, error) {
	return appliedMarks(ctx, db.r)
}
