package region

import (
	"container/list"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
)

// cache holds manifests by repository and digest, and tag -> digest
// resolutions, so a manifest GET needs no database round trip.
//
// Invariant 5: invalidate runs in every call that changes a tag or a
// manifest, and bumps gen; a reader records gen before its database read
// and stores what it read only if gen has not moved, so a value read
// before a concurrent write is never cached after that write.
//
// With a metadata store other nodes write too (PostgreSQL), their writes
// reach this cache as notifications: each transaction that changes tags or
// manifests a cache may hold names their repositories, and invalidateRepo
// forgets them here (meta.Listen). The writer answers only once every
// node has heard it, and a node uses its cache only while it holds its
// lease (meta.DB.Fresh, meta/lease.go); without one, reads go to the
// store (region.cached).
type cache struct {
	mu       sync.Mutex
	gen      uint64
	budget   int64
	used     int64
	lru      *list.List // of *cacheEntry, most recent first
	byKey    map[string]*list.Element
	tags     map[string]cachedTag
	disabled bool
	// repoGen counts each repository's invalidations by other nodes; an
	// entry read at another count is stale.
	repoGen map[string]uint64
}

type cacheEntry struct {
	key  string
	m    *meta.Manifest
	rgen uint64 // the repository's count when it was read
}

type cachedTag struct {
	d    digest.Digest
	rgen uint64
}

// maxInvalidatedRepos bounds repoGen; past it everything is forgotten.
const maxInvalidatedRepos = 100_000

// maxCachedTags bounds the tag map; past it the map is cleared.
const maxCachedTags = 100_000

func newCache(budget int64) *cache {
	return &cache{budget: budget, lru: list.New(), byKey: map[string]*list.Element{},
		tags: map[string]cachedTag{}, disabled: budget < 0, repoGen: map[string]uint64{}}
}

func manifestKey(repo string, d digest.Digest) string { return repo + "@" + d.String() }
func tagKey(repo, tag string) string                  { return repo + ":" + tag }

// generation returns the value a reader passes back to put*.
func (c *cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *cache) manifest(repo string, d digest.Digest) *meta.Manifest {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[manifestKey(repo, d)]; ok {
		e := el.Value.(*cacheEntry)
		if e.rgen != c.repoGen[repo] {
			c.remove(el)
			return nil
		}
		c.lru.MoveToFront(el)
		return e.m
	}
	return nil
}

// remove drops el; mu is held.
func (c *cache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.byKey, e.key)
	c.used -= int64(len(e.m.Payload))
}

func (c *cache) tag(repo, tag string) (digest.Digest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tags[tagKey(repo, tag)]
	if !ok || t.rgen != c.repoGen[repo] {
		return "", false
	}
	return t.d, true
}

func (c *cache) putManifest(gen uint64, m *meta.Manifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.disabled || gen != c.gen || int64(len(m.Payload)) > c.budget/4 {
		return
	}
	key := manifestKey(m.Repo, m.Digest)
	if _, ok := c.byKey[key]; ok {
		return
	}
	c.byKey[key] = c.lru.PushFront(&cacheEntry{key: key, m: m, rgen: c.repoGen[m.Repo]})
	c.used += int64(len(m.Payload))
	for c.used > c.budget {
		c.remove(c.lru.Back())
	}
}

func (c *cache) putTag(gen uint64, repo, tag string, d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.disabled || gen != c.gen {
		return
	}
	if len(c.tags) >= maxCachedTags {
		clear(c.tags)
	}
	c.tags[tagKey(repo, tag)] = cachedTag{d, c.repoGen[repo]}
}

// invalidateAll forgets everything.
func (c *cache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.clear()
}

// clear forgets every entry; mu is held.
func (c *cache) clear() {
	c.lru.Init()
	clear(c.byKey)
	clear(c.tags)
	clear(c.repoGen)
	c.used = 0
}

// invalidateRepo forgets every tag and manifest of repo ("": of every
// repository): another node changed some of them.
func (c *cache) invalidateRepo(repo string) {
	if repo == "" {
		c.invalidateAll()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if len(c.repoGen) >= maxInvalidatedRepos {
		// Forget all: entries read at a count this drops could match
		// again when it restarts from zero.
		c.clear()
	}
	c.repoGen[repo]++
}

// invalidate forgets a manifest and tags of repo. An empty digest or no
// tags forgets only the other.
func (c *cache) invalidate(repo string, d digest.Digest, tags ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if d != "" {
		if el, ok := c.byKey[manifestKey(repo, d)]; ok {
			c.remove(el)
		}
	}
	for _, t := range tags {
		delete(c.tags, tagKey(repo, t))
	}
}
