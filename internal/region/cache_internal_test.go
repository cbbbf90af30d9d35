package region

import (
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
)

func cached(repo, body string) *meta.Manifest {
	return &meta.Manifest{Repo: repo, Digest: digest.FromString(body), Payload: []byte(body)}
}

// TestTheCacheKeepsItsBudgetAndForgetsWhatChanged: manifests are kept
// least recently used first out within the budget (one above a quarter
// of it is not kept at all); a value read before an invalidation is not
// stored after it (invariant 5); an invalidation forgets exactly what it
// names; another node's change of a repository (invalidateRepo) forgets
// that repository's tags and manifests, and a value read before it is not
// stored after it; a negative budget disables it.
func TestTheCacheKeepsItsBudgetAndForgetsWhatChanged(t *testing.T) {
	c := newCache(400)
	a, b, d := cached("app", strings.Repeat("a", 100)), cached("app", strings.Repeat("b", 100)), cached("app", strings.Repeat("d", 100))
	for _, m := range []*meta.Manifest{a, b, d} {
		c.putManifest(c.generation(), m)
	}
	if c.used != 300 {
		t.Fatalf("used %d, want 300", c.used)
	}
	if c.manifest("app", a.Digest) != a { // a is now the most recent
		t.Fatal("a manifest within the budget is not kept")
	}
	c.putManifest(c.generation(), a) // again: counted once
	if c.used != 300 {
		t.Fatalf("a manifest put twice counts twice: used %d", c.used)
	}
	big := cached("app", strings.Repeat("x", 101)) // above budget/4
	c.putManifest(c.generation(), big)
	if c.manifest("app", big.Digest) != nil || c.used != 300 {
		t.Fatalf("a manifest above a quarter of the budget was kept (used %d)", c.used)
	}
	exact := cached("app", strings.Repeat("e", 100)) // exactly a quarter: kept, and the budget is exactly full
	c.putManifest(c.generation(), exact)
	if c.manifest("app", exact.Digest) == nil || c.used != 400 || c.manifest("app", b.Digest) == nil {
		t.Fatalf("a manifest of exactly a quarter, filling the budget exactly: used %d", c.used)
	}
	e2 := cached("app", strings.Repeat("f", 100))
	c.putManifest(c.generation(), e2) // over: the least recently used (d) goes
	if c.manifest("app", d.Digest) != nil || c.manifest("app", a.Digest) == nil || c.used != 400 {
		t.Fatalf("eviction: d kept %v, a kept %v, used %d", c.manifest("app", d.Digest) != nil, c.manifest("app", a.Digest) != nil, c.used)
	}

	// Read before a write, stored after it: refused.
	gen := c.generation()
	c.invalidate("app", a.Digest, "v1")
	c.putTag(gen, "app", "v1", a.Digest)
	c.putManifest(gen, a)
	if _, ok := c.tag("app", "v1"); ok || c.manifest("app", a.Digest) != nil {
		t.Fatal("a value read before an invalidation was cached after it")
	}
	if c.used != 300 {
		t.Fatalf("invalidation left used at %d, want 300", c.used)
	}
	c.putTag(c.generation(), "app", "v1", b.Digest)
	c.putTag(c.generation(), "app", "v2", b.Digest)
	c.invalidate("app", "", "v1")
	if _, ok := c.tag("app", "v1"); ok {
		t.Fatal("an invalidated tag is still cached")
	}
	if got, ok := c.tag("app", "v2"); !ok || got != b.Digest || c.manifest("app", b.Digest) == nil {
		t.Fatal("an invalidation forgot what it did not name")
	}
	c.invalidateAll()
	if _, ok := c.tag("app", "v2"); ok || c.manifest("app", b.Digest) != nil || c.used != 0 {
		t.Fatalf("invalidateAll kept something (used %d)", c.used)
	}

	// Another node changed repository app: its tags and manifests go,
	// other repositories' stay, and a read begun before is not kept.
	s := newCache(400)
	other := cached("lib", strings.Repeat("o", 100))
	s.putTag(s.generation(), "app", "v1", a.Digest)
	s.putTag(s.generation(), "lib", "v1", other.Digest)
	s.putManifest(s.generation(), a)
	s.putManifest(s.generation(), other)
	before := s.generation()
	s.invalidateRepo("app")
	if _, ok := s.tag("app", "v1"); ok || s.manifest("app", a.Digest) != nil {
		t.Fatal("another node's change of app left app's tag or manifest cached")
	}
	if _, ok := s.tag("lib", "v1"); !ok || s.manifest("lib", other.Digest) == nil {
		t.Fatal("another node's change of app forgot lib's tag or manifest")
	}
	s.putTag(before, "app", "v1", a.Digest)
	s.putManifest(before, a)
	if _, ok := s.tag("app", "v1"); ok || s.manifest("app", a.Digest) != nil {
		t.Fatal("a value read before another node's change was kept after it")
	}
	s.putTag(s.generation(), "app", "v1", b.Digest)
	if d, ok := s.tag("app", "v1"); !ok || d != b.Digest {
		t.Fatal("a value read after another node's change is not cached")
	}
	s.invalidateRepo("")
	if _, ok := s.tag("lib", "v1"); ok || s.used != 0 {
		t.Fatal(`invalidateRepo("") kept something`)
	}

	off := newCache(-1)
	off.putManifest(off.generation(), a)
	off.putTag(off.generation(), "app", "v1", a.Digest)
	if _, ok := off.tag("app", "v1"); ok || off.manifest("app", a.Digest) != nil {
		t.Fatal("a disabled cache keeps things")
	}
	zero := newCache(0) // no budget: nothing fits, nothing breaks
	zero.putManifest(zero.generation(), a)
	if zero.manifest("app", a.Digest) != nil {
		t.Fatal("a zero budget keeps a manifest")
	}
	zero.putTag(zero.generation(), "app", "v1", a.Digest) // tags are bounded by count, not by the budget
	if d, ok := zero.tag("app", "v1"); !ok || d != a.Digest {
		t.Fatal("a zero budget disables the tag map")
	}
}

// TestAReadFromBeforeAnyInvalidationIsNeverStored: a reader's value, read
// before invalidations of both kinds, is not stored whatever their order.
func TestAReadFromBeforeAnyInvalidationIsNeverStored(t *testing.T) {
	d := digest.FromString("stale")
	for name, invalidations := range map[string][]func(c *cache){
		"one, then all": {func(c *cache) { c.invalidate("app", d, "v1") }, func(c *cache) { c.invalidateAll() }},
		"all, then one": {func(c *cache) { c.invalidateAll() }, func(c *cache) { c.invalidate("app", d, "v1") }},
	} {
		c := newCache(1 << 20)
		gen := c.generation()
		for _, inv := range invalidations {
			inv(c)
		}
		c.putTag(gen, "app", "v1", d)
		if _, ok := c.tag("app", "v1"); ok {
			t.Errorf("%s: a tag read before them was stored", name)
		}
	}
}

func TestTheTagMapIsClearedWhenFull(t *testing.T) {
	c := newCache(1 << 20)
	for i := range maxCachedTags {
		c.tags[tagKey("app", strconv.Itoa(i))] = cachedTag{}
	}
	c.putTag(c.generation(), "app", "new", digest.FromString("n"))
	if len(c.tags) != 1 {
		t.Fatalf("at the bound the map holds %d after a put, want 1", len(c.tags))
	}
}
