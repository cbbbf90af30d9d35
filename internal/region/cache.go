package region

import (
	"container/list"
	"sync"
	"time"

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
// With a metadata store other nodes write too (shared), this node does not
// see their writes: tags, which move, are not cached at all (a tag GET
// always reads the store, so a push through any node is seen by the next
// pull through any other); a manifest by digest, which never changes but
// may be deleted, is kept for sharedMaxAge at most, so a delete through
// another node is seen within that.
type cache struct {
	mu       sync.Mutex
	gen      uint64
	budget   int64
	used     int64
	lru      *list.List // of *cacheEntry, most recent first
	byKey    map[string]*list.Element
	tags     map[string]digest.Digest
	disabled bool
	shared   bool
	now      func() time.Time
}

// sharedMaxAge is how long a manifest stays cached when other nodes write
// the store too.
const sharedMaxAge = time.Second

type cacheEntry struct {
	key string
	m   *meta.Manifest
	at  time.Time // when it was read from the store
}

// maxCachedTags bounds the tag map; past it the map is cleared.
const maxCachedTags = 100_000

func newCache(budget int64, shared bool) *cache {
	return &cache{budget: budget, lru: list.New(), byKey: map[string]*list.Element{},
		tags: map[string]digest.Digest{}, disabled: budget < 0, shared: shared, now: time.Now}
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
		if c.shared && c.now().Sub(e.at) > sharedMaxAge {
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
	d, ok := c.tags[tagKey(repo, tag)]
	return d, ok
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
	c.byKey[key] = c.lru.PushFront(&cacheEntry{key: key, m: m, at: c.now()})
	c.used += int64(len(m.Payload))
	for c.used > c.budget {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.byKey, e.key)
		c.used -= int64(len(e.m.Payload))
	}
}

func (c *cache) putTag(gen uint64, repo, tag string, d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.disabled || c.shared || gen != c.gen {
		return
	}
	if len(c.tags) >= maxCachedTags {
		clear(c.tags)
	}
	c.tags[tagKey(repo, tag)] = d
}

// invalidateAll forgets everything.
func (c *cache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.lru.Init()
	clear(c.byKey)
	clear(c.tags)
	c.used = 0
}

// invalidate forgets a manifest and tags of repo. An empty digest or no
// tags forgets only the other.
func (c *cache) invalidate(repo string, d digest.Digest, tags ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if d != "" {
		if el, ok := c.byKey[manifestKey(repo, d)]; ok {
			c.lru.Remove(el)
			delete(c.byKey, manifestKey(repo, d))
			c.used -= int64(len(el.Value.(*cacheEntry).m.Payload))
		}
	}
	for _, t := range tags {
		delete(c.tags, tagKey(repo, t))
	}
}
