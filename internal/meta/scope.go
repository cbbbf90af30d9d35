package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/georeg/georeg/internal/hlc"
)

// Write scopes. A write transaction declares what it writes, and takes
// the locks of that scope (PostgreSQL), so writes of different
// repositories run at once on every node of a region while every check a
// write relies on still sees no concurrent write of what it checks:
//
//   - UpdateRepo(repo): the rows of one repository (its blob links,
//     manifests, tags, presence, its upload sessions), plus rows no other
//     transaction writes (new feed records, audit records, webhook
//     deliveries). It takes the region's lock shared and the
//     repository's lock exclusive.
//   - Update: anything (settings, cursors, GC, retention, purge, every
//     repository at once). It takes the region's lock exclusive, so it
//     runs alone, as every write did before scopes.
//
// The feed stays gap-free and in commit order: a transaction's feed
// records are held in memory until it ends, then numbered and inserted
// under the feed sequencer's lock, held through the commit (seq = the
// largest committed + 1). Whoever takes the sequencer next sees every
// record numbered before it. Versions stay ordered per key: a write of a
// repository reads the region's newest version after it holds the
// repository's lock, and the writer before it recorded its version
// before it let the lock go (end).
//
// No deadlock: a transaction waits for a lock only for its first write,
// while it holds nothing, and for the sequencer at its end, whose holder
// waits for nothing but its commit. The later writes of a batch only try
// their locks; one that finds its lock held is put back in the queue and
// runs first in the next batch (batch.go).
//
// SQLite has one writer, so scopes take no lock there; the checks that
// a transaction writes only within its scope run on both.

// Advisory lock keys. The region's and the sequencer's are single bigint
// keys; a repository's is the two-int4 form (a key space of its own),
// keyed by a hash of its name (a collision only serializes two
// repositories' writes).
const (
	regionLockKey    = 0x67656f726567 // "georeg"
	sequencerLockKey = regionLockKey + 1
	repoLockClass    = 0x67656f72 // "geor"
)

func repoLockKey(repo string) int32 {
	h := fnv.New32a()
	h.Write([]byte(repo))
	return int32(h.Sum32())
}

// UpdateRepo runs fn in a write transaction that writes repository repo
// only (see Write scopes). fn runs at once with writes of other
// repositories, one after the other with writes of repo and with region
// wide writes (Update). A write fn makes outside the scope fails.
func (db *DB) UpdateRepo(ctx context.Context, repo string, fn func(*Tx) error) error {
	if repo == "" {
		return errors.New("a repository write needs a repository name")
	}
	return db.update(ctx, repo, fn)
}

// errOutOfScope is a programming error: a write outside the transaction's
// scope.
var errOutOfScope = errors.New("write outside the transaction's scope")

// writes checks that the running write may write repository repo.
func (tx *Tx) writes(repo string) error {
	if tx.scope != "" && tx.scope != repo {
		return fmt.Errorf("%w: repository %q in a write of repository %q", errOutOfScope, repo, tx.scope)
	}
	return nil
}

// writesRegion checks that the running write is region-wide (Update).
func (tx *Tx) writesRegion(what string) error {
	if tx.scope != "" {
		return fmt.Errorf("%w: %s in a write of repository %q", errOutOfScope, what, tx.scope)
	}
	return nil
}

// lock takes the locks scope needs in t (PostgreSQL), waiting for them
// when wait is set (the transaction's first write, which holds nothing
// yet) and otherwise only trying: it reports false when another
// transaction holds one. Locks t already holds are not taken again. A
// write of a repository newly locked first moves the clock past the
// region's newest version.
func (db *DB) lock(ctx context.Context, t *Tx, scope string, wait bool) (bool, error) {
	if db.dialect != postgres || t.exclusive || (scope != "" && t.held[scope]) {
		return true, nil
	}
	var got bool
	var err error
	switch {
	case scope == "" && wait:
		_, err = t.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(regionLockKey))
		got = err == nil
	case scope == "":
		// Held shared by this transaction already: only others' holds
		// conflict.
		err = t.tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(regionLockKey)).Scan(&got)
	case wait:
		_, err = t.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock_shared($1), pg_advisory_xact_lock($2, $3)`,
			int64(regionLockKey), int32(repoLockClass), repoLockKey(scope))
		got = err == nil
	default:
		err = t.tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1, $2)`, int32(repoLockClass), repoLockKey(scope)).Scan(&got)
	}
	if err != nil {
		return false, fmt.Errorf("take the write lock: %w", err)
	}
	if !got {
		return false, nil
	}
	if scope == "" {
		t.exclusive = true
	} else {
		if t.held == nil {
			t.held = map[string]bool{}
		}
		t.held[scope] = true
	}
	return true, db.observeClock(ctx, t)
}

// observeClock moves the clock past the newest version the region's
// nodes committed.
func (db *DB) observeClock(ctx context.Context, t *Tx) error {
	if db.clock == nil {
		return nil
	}
	var last int64
	err := t.tx.QueryRowContext(ctx, `SELECT value FROM region_state WHERE name = 'hlc'`).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read the region's clock: %w", err)
	}
	db.clock.Observe(hlc.Version{Time: last})
	return nil
}

// sequence numbers and inserts the feed records t holds, after the
// feed's largest committed number, and records the clock's newest
// version, under the sequencer's lock (PostgreSQL; held through the
// commit). A region-wide transaction runs alone and needs no sequencer.
func (db *DB) sequence(ctx context.Context, t *Tx) error {
	if !t.exclusive {
		if _, err := t.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(sequencerLockKey)); err != nil {
			return fmt.Errorf("take the feed sequencer: %w", err)
		}
	}
	for _, rec := range t.feed {
		_, err := t.tx.ExecContext(ctx, `
			INSERT INTO feed (seq, kind, repo, digest, tag, media_type, size, version, origin, created_at)
			VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM feed), $1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			rec.Kind, rec.Repo, rec.Digest.String(), rec.Tag, rec.MediaType, rec.Size,
			rec.Version.Time, rec.Version.Region, rec.Created.UnixMilli())
		if err != nil {
			return fmt.Errorf("append to the feed: %w", err)
		}
	}
	if len(t.feed) > 0 {
		if err := t.notifyFeed(ctx); err != nil {
			return err
		}
	}
	if db.clock == nil {
		return nil
	}
	_, err := t.tx.ExecContext(ctx, `INSERT INTO region_state (name, value) VALUES ('hlc', $1)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value WHERE region_state.value < excluded.value`, db.clock.Last())
	return err
}

// waited records a write's wait for its turn (WriteStats).
func (db *DB) waited(asked, locked time.Time) {
	db.writes.Add(1)
	db.writeWaitNs.Add(int64(locked.Sub(asked)))
}
