package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
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
//     deliveries) and the cursor of the peer whose record of repo it
//     applies (writesCursor). It takes the region's lock shared and the
//     repository's lock exclusive.
//   - Update: anything (settings, cursors, GC, retention, purge, every
//     repository at once). It takes the region's lock exclusive, so it
//     runs alone, as every write did before scopes.
//   - A bookkeeping scope (scopeJobLeases, scopeDeliveries,
//     scopePublished, scopeTraffic, scopeAudit): rows of the region's own
//     bookkeeping that no repository write reads to decide anything (the
//     nodes' job leases, claims of webhook deliveries, what a node
//     publishes of its jobs, traffic counts and pull notes, audit entries
//     of logins and refused requests). It takes the
//     region's lock shared and the scope's own lock exclusive, like a
//     repository's. As region-wide writes these stalled every write of
//     the region: each waited for every write under way to end and held
//     back every write asked after it (each node asks for its job leases
//     and its due deliveries every few seconds; with PostgreSQL 2.5 ms
//     away, 20 writes at a time waited behind one, docs/performance.md).
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

// writesCursor checks that the running write may move a peer's cursor:
// a region-wide write, or a repository's (a record of that repository
// applied from the peer's feed). A cursor moves only forward, and only
// the follower of its peer moves it, one record after another, so an
// apply needs no more than its repository's lock.
func (tx *Tx) writesCursor() error {
	if tx.scope != "" && tx.scope[0] == ' ' {
		return fmt.Errorf("%w: SetCursor in a write of %q", errOutOfScope, tx.scope)
	}
	return nil
}

// Bookkeeping scopes (see Write scopes). Their names begin with a space,
// which no repository name holds.
const (
	scopeJobLeases  = " job leases"
	scopeDeliveries = " webhook deliveries"
	scopePublished  = " published job state"
	scopeTraffic    = " traffic"
	scopeAudit      = " audit"
)

// writesBookkeeping checks that the running write is of bookkeeping
// scope, or region-wide.
func (tx *Tx) writesBookkeeping(scope, what string) error {
	if tx.scope != "" && tx.scope != scope {
		return fmt.Errorf("%w: %s in a write of %q", errOutOfScope, what, tx.scope)
	}
	return nil
}

// UpdateDeliveries runs fn in a write of the webhook deliveries' scope
// (ClaimDeliveries and the other writes of deliveries due or attempted),
// beside the region's repository writes.
func (db *DB) UpdateDeliveries(ctx context.Context, fn func(*Tx) error) error {
	return db.update(ctx, scopeDeliveries, fn)
}

// UpdateAudit runs fn, which only adds audit entries (AppendAudit: a
// login, a refused request), in a write of the audit scope, beside the
// region's repository writes.
func (db *DB) UpdateAudit(ctx context.Context, fn func(*Tx) error) error {
	return db.update(ctx, scopeAudit, fn)
}

// UpdateTraffic runs fn in a write of the traffic counts' and pull
// notes' scope (AddTraffic, NotePulled, ForgetPulled), beside the
// region's repository writes.
func (db *DB) UpdateTraffic(ctx context.Context, fn func(*Tx) error) error {
	return db.update(ctx, scopeTraffic, fn)
}

// pgFunctions are created (or replaced) with the schema, on PostgreSQL.
// Each takes locks and then reads or writes what the locks guard in one
// round trip: a VOLATILE function takes a fresh snapshot for each query
// it runs, so what it reads after a lock is what the lock's previous
// holder committed (one SQL statement would read from a snapshot taken
// before it waited).
//
// georeg_lock takes the region's lock exclusive (repo NULL) or shared
// with repository repo's lock exclusive, waiting for them or only trying
// (then NULL when a lock is taken by another transaction), and returns
// the region's newest version.
//
// georeg_try_locks tries the locks of repositories repos (with the
// region's lock held shared already) and returns, for each, 't' when it
// is held or 'f' when another transaction holds it, and the region's
// newest version.
//
// georeg_sequence takes the feed sequencer (when take), records the
// node's newest version hlc, notifies the feed's listeners (when notify)
// and returns the feed's largest number. Kept for nodes of the version
// before georeg_end during a rolling upgrade.
//
// georeg_end ends a write transaction in one round trip: it takes the
// feed sequencer (when take), records the node's newest version hlc,
// appends the transaction's feed records numbered after the feed's
// largest (each with the running total of blob bytes), sets the feed
// number of its presence marks (the mark's record's, where a row has
// none yet), notifies the feed's listeners when it appended and the
// nodes of what it changed (changes, when not NULL), and returns the
// feed's largest number before its records.
var pgFunctions = []string{`
CREATE OR REPLACE FUNCTION georeg_lock(region bigint, class integer, repo integer, wait boolean) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	IF repo IS NULL THEN
		IF wait THEN
			PERFORM pg_advisory_xact_lock(region);
		ELSIF NOT pg_try_advisory_xact_lock(region) THEN
			RETURN NULL;
		END IF;
	ELSIF wait THEN
		PERFORM pg_advisory_xact_lock_shared(region);
		PERFORM pg_advisory_xact_lock(class, repo);
	ELSIF NOT pg_try_advisory_xact_lock(class, repo) THEN
		RETURN NULL;
	END IF;
	RETURN COALESCE((SELECT value FROM region_state WHERE name = 'hlc'), 0);
END $$`, `
CREATE OR REPLACE FUNCTION georeg_try_locks(class integer, repos integer[], OUT taken text, OUT hlc bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	k integer;
BEGIN
	taken := '';
	FOREACH k IN ARRAY repos LOOP
		taken := taken || CASE WHEN pg_try_advisory_xact_lock(class, k) THEN 't' ELSE 'f' END;
	END LOOP;
	hlc := COALESCE((SELECT value FROM region_state WHERE name = 'hlc'), 0);
END $$`, `
CREATE OR REPLACE FUNCTION georeg_sequence(sequencer bigint, take boolean, hlc bigint, channel text, notify boolean) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	IF take THEN
		PERFORM pg_advisory_xact_lock(sequencer);
	END IF;
	IF hlc IS NOT NULL THEN
		INSERT INTO region_state (name, value) VALUES ('hlc', hlc)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value WHERE region_state.value < excluded.value;
	END IF;
	IF notify THEN
		PERFORM pg_notify(channel, '');
	END IF;
	RETURN COALESCE((SELECT MAX(seq) FROM feed), 0);
END $$`, `
CREATE OR REPLACE FUNCTION georeg_end(sequencer bigint, take boolean, hlc bigint, feed_channel text,
	changes_channel text, changes text,
	kinds text[], repos text[], digests text[], tags text[], media_types text[], sizes bigint[], versions bigint[], origins text[], created bigint[],
	mark_repos text[], mark_digests text[], mark_regions text[], mark_records bigint[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	base bigint;
BEGIN
	IF take THEN
		PERFORM pg_advisory_xact_lock(sequencer);
	END IF;
	IF hlc IS NOT NULL THEN
		INSERT INTO region_state (name, value) VALUES ('hlc', hlc)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value WHERE region_state.value < excluded.value;
	END IF;
	base := COALESCE((SELECT MAX(seq) FROM feed), 0);
	IF cardinality(kinds) > 0 THEN
		INSERT INTO feed (seq, kind, repo, digest, tag, media_type, size, version, origin, created_at, blob_bytes)
		SELECT base + r.n, r.kind, r.repo, r.digest, r.tag, r.media_type, r.size, r.version, r.origin, r.created_at,
			b.total + SUM(CASE WHEN r.kind = 'blob' THEN r.size ELSE 0 END) OVER (ORDER BY r.n)
		FROM unnest(kinds, repos, digests, tags, media_types, sizes, versions, origins, created)
			WITH ORDINALITY AS r(kind, repo, digest, tag, media_type, size, version, origin, created_at, n),
			(SELECT COALESCE((SELECT blob_bytes FROM feed WHERE seq = base), 0) AS total) AS b;
		IF cardinality(mark_repos) > 0 THEN
			UPDATE presence p SET seq = base + m.rec
			FROM unnest(mark_repos, mark_digests, mark_regions, mark_records) AS m(repo, digest, region, rec)
			WHERE p.repo = m.repo AND p.digest = m.digest AND p.region = m.region AND p.seq = 0;
		END IF;
		PERFORM pg_notify(feed_channel, '');
	END IF;
	IF changes IS NOT NULL THEN
		PERFORM pg_notify(changes_channel, changes);
	END IF;
	RETURN base;
END $$`}

// lock takes the locks scope needs in t (PostgreSQL), waiting for them
// when wait is set (the transaction's first write, which holds nothing
// yet) and otherwise only trying: it reports false when another
// transaction holds one. Locks t already holds are not taken again. A
// write of a repository newly locked moves the clock past the region's
// newest version, read once the lock is held.
func (db *DB) lock(ctx context.Context, t *Tx, scope string, wait bool) (bool, error) {
	if db.dialect != postgres || t.exclusive || (scope != "" && t.held[scope]) {
		return true, nil
	}
	if scope != "" && t.busy[scope] {
		return false, nil // lockAhead found it taken
	}
	var repo *int32
	if scope != "" {
		k := repoLockKey(scope)
		repo = &k
	}
	var last sql.NullInt64
	err := t.tx.QueryRowContext(ctx, `SELECT georeg_lock($1, $2, $3, $4)`,
		int64(regionLockKey), int32(repoLockClass), repo, wait).Scan(&last)
	if err != nil {
		return false, fmt.Errorf("take the write lock: %w", err)
	}
	if !last.Valid {
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
	if db.clock != nil {
		db.clock.Observe(hlc.Version{Time: last.Int64})
	}
	return true, nil
}

// lockAhead tries, in one round trip, the locks of every repository in
// scopes that t does not hold yet (PostgreSQL; t holds the region's lock
// shared: its first write was a repository's). A lock another
// transaction holds is noted busy: lock then reports it taken without
// asking again, and its writes run in the next batch. Region-wide
// scopes ("") are left to lock.
func (db *DB) lockAhead(ctx context.Context, t *Tx, scopes []string) error {
	if db.dialect != postgres || t.exclusive {
		return nil
	}
	var names []string
	var keys []int32
	for _, scope := range scopes {
		if scope == "" || t.held[scope] || slices.Contains(names, scope) {
			continue
		}
		names, keys = append(names, scope), append(keys, repoLockKey(scope))
	}
	if len(names) == 0 {
		return nil
	}
	var taken string
	var last int64
	if err := t.tx.QueryRowContext(ctx, `SELECT taken, hlc FROM georeg_try_locks($1, $2)`,
		int32(repoLockClass), keys).Scan(&taken, &last); err != nil {
		return fmt.Errorf("take the write locks: %w", err)
	}
	if len(taken) != len(names) {
		return fmt.Errorf("take the write locks: %d answers for %d locks", len(taken), len(names))
	}
	for i, name := range names {
		if taken[i] == 't' {
			if t.held == nil {
				t.held = map[string]bool{}
			}
			t.held[name] = true
			continue
		}
		if t.busy == nil {
			t.busy = map[string]bool{}
		}
		t.busy[name] = true
	}
	if db.clock != nil {
		db.clock.Observe(hlc.Version{Time: last})
	}
	return nil
}

// sequence numbers and inserts the feed records t holds, after the
// feed's largest committed number, marks their presence, records the
// clock's newest version and notifies the feed's listeners and the other
// nodes, under the feed sequencer's lock (PostgreSQL; held through the
// commit), in one round trip (georeg_end). A region-wide transaction runs
// alone and needs no sequencer.
//
// The change t made is numbered among this node's (changesPayload) while
// seqMu is held, until the call holds the sequencer: the node's changes
// are numbered in the order they commit, though its lanes' batches run
// at once, so an acknowledgement of a later number covers every earlier
// change (lease.go).
func (db *DB) sequence(ctx context.Context, t *Tx) error {
	var clock *int64
	if db.clock != nil {
		last := db.clock.Last()
		clock = &last
	}
	n := len(t.feed)
	kind, repo, dgst, tag, mediaType, origin := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	size, version, created := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, rec := range t.feed {
		kind[i], repo[i], dgst[i], tag[i], mediaType[i], origin[i] = rec.Kind, rec.Repo, rec.Digest.String(), rec.Tag, rec.MediaType, rec.Version.Region
		size[i], version[i], created[i] = rec.Size, rec.Version.Time, rec.Created.UnixMilli()
	}
	mRepo, mDigest, mRegion, mRecord := presenceMarks(t)
	db.seqMu.Lock()
	defer db.seqMu.Unlock()
	changes := t.changesPayload(db.lst)
	var base int64
	err := t.tx.QueryRowContext(ctx, `SELECT georeg_end($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		int64(sequencerLockKey), !t.exclusive, clock, feedChannel, changesChannel, changes,
		kind, repo, dgst, tag, mediaType, size, version, origin, created,
		mRepo, mDigest, mRegion, mRecord).Scan(&base)
	if err != nil {
		return fmt.Errorf("take the feed sequencer and append to the feed: %w", err)
	}
	return nil
}

// presenceMarks lists t's presence marks for georeg_end, each with the
// number of its record in t's feed records (1-based): one per row, the
// first (as one statement each, in order, would have it). A mark with no
// record appended before it is none.
func presenceMarks(t *Tx) (repo, dgst, region []string, record []int64) {
	repo, dgst, region, record = []string{}, []string{}, []string{}, []int64{}
	seen := map[pendingMark]bool{}
	for _, m := range t.marks {
		if m.record == 0 {
			continue // no record appended before it: no mark
		}
		row := pendingMark{repo: m.repo, digest: m.digest, region: m.region}
		if seen[row] {
			continue
		}
		seen[row] = true
		repo, dgst, region, record = append(repo, m.repo), append(dgst, m.digest), append(region, m.region), append(record, int64(m.record))
	}
	return repo, dgst, region, record
}

// waited records a write's wait for its turn (WriteStats).
func (db *DB) waited(asked, locked time.Time) {
	db.writes.Add(1)
	db.writeWaitNs.Add(int64(locked.Sub(asked)))
}
