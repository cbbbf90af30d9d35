package meta

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"sync"
)

// The summary tree. Anti-entropy compares regions by a tree of hashes:
// the registry's root, over NumBuckets buckets, each over the
// repositories whose name hashes into it, each over its tags, manifests
// and blob tombstones (summary.go). Two regions that agree exchange one
// root and its buckets; where they differ, only the differing buckets'
// repositories are listed, and only the differing repositories compared.
//
// Keeping it costs O(changes), not O(registry): every write of a
// repository's tags, manifests or blob tombstones moves the repository's
// generation (repo_gens) in its transaction, and a node recomputes the
// summaries of the repositories whose generation moved since it last
// looked. A bucket's hash is the XOR of its repositories' leaf hashes
// (sha256 of name and summary), so a repository's change updates its
// bucket in O(1). The generation is read before the repository is
// scanned, so a summary is never older than the generation it is kept
// under (a write between the two is seen again next time).
//
// A change made behind georeg's back (rows removed by hand, a bug that
// writes without moving the generation) moves no generation, so each
// refresh also scans again the next repositories in name order, rolling:
// about verifyRows rows, or one in verifyShare of the registry's rows if
// more (a repository larger than that waits until refreshes have saved up
// the rows to scan it). Every repository is verified every verifyShare
// refreshes or sooner, and a node that starts computes every summary
// afresh.

// NumBuckets is how many buckets the tree's root has.
const NumBuckets = 256

// Tree is the root of the summary tree and its buckets (hex; "" for an
// empty bucket).
type Tree struct {
	Root    string
	Buckets []string
}

// BucketOf is the bucket repository repo belongs to.
func BucketOf(repo string) int {
	h := sha256.Sum256([]byte(repo))
	return int(h[0])
}

// summaryCache is a node's summaries, by repository, with the generation
// each was computed at.
type summaryCache struct {
	mu      sync.Mutex // held through a refresh: one at a time
	repos   map[string]cachedSummary
	buckets [NumBuckets][sha256.Size]byte
	filled  [NumBuckets]int // repositories per bucket
	// Scans counts the repositories scanned (a whole-store scan counts
	// each it found): what a refresh cost, for tests and metrics.
	scans int64
	// order is every repository, sorted, for the rolling verification
	// (nil: to be rebuilt); next is where the next slice starts; credit
	// is the rows refreshes have saved up to verify; rows is the rows of
	// every repository.
	order  []string
	next   int
	credit int
	rows   int
	// drifted counts summaries found changed with no generation moved.
	drifted int64
}

// The rolling verification's rows per refresh.
const (
	verifyRows  = 1000
	verifyShare = 256
)

type cachedSummary struct {
	gen  int64
	hash string
	rows int // its tag, manifest and blob tombstone rows
}

// leaf is a repository's contribution to its bucket.
func leaf(repo, summary string) [sha256.Size]byte {
	return sha256.Sum256([]byte(repo + "\n" + summary))
}

func xor(a *[sha256.Size]byte, b [sha256.Size]byte) {
	for i := range a {
		a[i] ^= b[i]
	}
}

// set records repo's summary s (empty hash: it holds nothing, and is
// left out, as in a region that never had it), keeping its bucket's hash.
func (c *summaryCache) set(repo string, s cachedSummary) {
	b := BucketOf(repo)
	old, known := c.repos[repo]
	if known && old.hash != "" {
		xor(&c.buckets[b], leaf(repo, old.hash))
		c.filled[b]--
	}
	if s.hash != "" {
		xor(&c.buckets[b], leaf(repo, s.hash))
		c.filled[b]++
	}
	if !known {
		c.order = nil
	}
	c.rows += s.rows - old.rows
	c.repos[repo] = s
}

func (c *summaryCache) drop(repo string) {
	c.set(repo, cachedSummary{})
	delete(c.repos, repo)
	c.order = nil
}

// fullScanAbove is how many repositories changed since the last refresh
// make one scan of the whole store cheaper than one query per repository.
const fullScanAbove = 64

// refresh brings the node's summaries up to the store's generations.
// Call with c.mu held.
func (db *DB) refreshSummaries(ctx context.Context) error {
	c := &db.summaries
	if c.repos == nil {
		c.repos = map[string]cachedSummary{}
	}
	gens := map[string]int64{}
	rows, err := db.query(ctx, `SELECT repo, gen FROM repo_gens`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var repo string
		var gen int64
		if err := rows.Scan(&repo, &gen); err != nil {
			rows.Close()
			return err
		}
		gens[repo] = gen
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for repo := range c.repos {
		if _, ok := gens[repo]; !ok {
			c.drop(repo) // purged
		}
	}
	var stale []string
	for repo, gen := range gens {
		if old, ok := c.repos[repo]; !ok || old.gen != gen {
			stale = append(stale, repo)
		}
	}
	if len(stale) > fullScanAbove {
		all, err := db.summariesByScan(ctx)
		if err != nil {
			return err
		}
		for repo, gen := range gens {
			s := all[repo]
			s.gen = gen
			c.set(repo, s)
		}
		c.scans += int64(len(all))
		return nil
	}
	for _, repo := range stale {
		if err := db.rescan(ctx, repo, gens[repo]); err != nil {
			return err
		}
	}
	return db.verifySlice(ctx)
}

// rescan computes repo's summary at generation gen.
func (db *DB) rescan(ctx context.Context, repo string, gen int64) error {
	st, err := db.RepoEntries(ctx, repo)
	if err != nil {
		return err
	}
	s := cachedSummary{gen: gen, rows: len(st.Tags) + len(st.Manifests) + len(st.Blobs)}
	if s.rows > 0 {
		s.hash = SummaryOf(st)
	}
	c := &db.summaries
	if old, ok := c.repos[repo]; ok && old.gen == gen && old.hash != s.hash {
		c.drifted++
	}
	c.set(repo, s)
	c.scans++
	return nil
}

// verifySlice scans the next slice of repositories again (rolling
// verification).
func (db *DB) verifySlice(ctx context.Context) error {
	c := &db.summaries
	if c.order == nil {
		c.order = make([]string, 0, len(c.repos))
		for repo := range c.repos {
			c.order = append(c.order, repo)
		}
		slices.Sort(c.order)
	}
	if len(c.order) == 0 {
		return nil
	}
	// Saved up to one refresh's worth beyond a whole pass, at most.
	step := max(verifyRows, c.rows/verifyShare)
	c.credit = min(c.credit+step, c.rows+step)
	for range len(c.order) {
		if c.next >= len(c.order) {
			c.next = 0
		}
		repo := c.order[c.next]
		cost := max(c.repos[repo].rows, 1)
		if cost > c.credit {
			return nil
		}
		c.credit -= cost
		c.next++
		if err := db.rescan(ctx, repo, c.repos[repo].gen); err != nil {
			return err
		}
	}
	return nil
}

// SummaryTree returns the root and buckets of this region's summary tree.
func (db *DB) SummaryTree(ctx context.Context) (Tree, error) {
	c := &db.summaries
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := db.refreshSummaries(ctx); err != nil {
		return Tree{}, err
	}
	t := Tree{Buckets: make([]string, NumBuckets)}
	root := sha256.New()
	for b := range NumBuckets {
		if c.filled[b] > 0 {
			t.Buckets[b] = hex.EncodeToString(c.buckets[b][:])
		}
		root.Write([]byte(t.Buckets[b] + "\n"))
	}
	t.Root = hex.EncodeToString(root.Sum(nil))
	return t, nil
}

// BucketSummaries returns the summary of every repository of bucket b
// that holds something (b < 0: of every bucket).
func (db *DB) BucketSummaries(ctx context.Context, b int) (map[string]string, error) {
	c := &db.summaries
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := db.refreshSummaries(ctx); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for repo, s := range c.repos {
		if s.hash != "" && (b < 0 || BucketOf(repo) == b) {
			out[repo] = s.hash
		}
	}
	return out, nil
}

// SummaryScans is how many repositories this node has scanned to keep its
// summaries (what the tree's upkeep costs), and how many summaries it
// found changed with no generation moved (changes behind georeg's back).
func (db *DB) SummaryScans() (scans, drifted int64) {
	c := &db.summaries
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scans, c.drifted
}

// summaryChanged records that this write changes repo's summary.
func (tx *Tx) summaryChanged(repo string) {
	if tx.summaries == nil {
		tx.summaries = map[string]struct{}{}
	}
	tx.summaries[repo] = struct{}{}
}

// moveGenerations moves the generation of every repository whose summary
// the transaction changed (at its end, once per repository; on
// PostgreSQL in one statement).
func (tx *Tx) moveGenerations(ctx context.Context) error {
	if tx.dialect == postgres && len(tx.summaries) > 0 {
		if _, err := tx.exec(ctx, `INSERT INTO repo_gens (repo, gen) SELECT unnest($1::text[]), 1
			ON CONFLICT (repo) DO UPDATE SET gen = repo_gens.gen + 1`, slices.Collect(maps.Keys(tx.summaries))); err != nil {
			return err
		}
		tx.summaries = nil
		return nil
	}
	for repo := range tx.summaries {
		if _, err := tx.exec(ctx, `INSERT INTO repo_gens (repo, gen) VALUES ($1, 1)
			ON CONFLICT (repo) DO UPDATE SET gen = repo_gens.gen + 1`, repo); err != nil {
			return err
		}
	}
	tx.summaries = nil
	return nil
}

// finish writes what the transaction's writes left for its end: the
// repositories they recorded, the cursors they moved, their audit entries
// and their summaries' generations.
func (tx *Tx) finish(ctx context.Context) error {
	if err := tx.recordRepositories(ctx); err != nil {
		return err
	}
	if err := tx.writeCursors(ctx); err != nil {
		return err
	}
	if err := tx.writeAudit(ctx); err != nil {
		return err
	}
	return tx.moveGenerations(ctx)
}
