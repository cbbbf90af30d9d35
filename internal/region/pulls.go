package region

import (
	"context"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
)

// When each manifest of a cached repository was last pulled here: the
// artifact cache evicts what no region pulled for its rule's period. The
// request path notes a pull in memory; the node records its notes with
// its traffic counts (trafficEvery), one row per manifest, to the second.

type pullKey struct {
	repo string
	d    digest.Digest
}

// NotePulled notes that repo's manifest d was pulled now: in memory,
// recorded in the store within trafficEvery.
func (r *Region) NotePulled(repo string, d digest.Digest) {
	t := &r.traffic
	now := r.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pulls == nil {
		t.pulls = map[pullKey]time.Time{}
	}
	t.pulls[pullKey{repo, d}] = now
}

// LastPulled returns when each manifest of repo was last pulled here: as
// recorded by every node, and as noted by this one since.
func (r *Region) LastPulled(ctx context.Context, repo string) (map[digest.Digest]time.Time, error) {
	out, err := r.db.LastPulled(ctx, repo)
	if err != nil {
		return nil, err
	}
	t := &r.traffic
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, noted := range []map[pullKey]time.Time{t.pulls, t.flushing} {
		for k, at := range noted {
			if k.repo == repo && at.After(out[k.d]) {
				out[k.d] = at
			}
		}
	}
	return out, nil
}

// ForgetPulled drops the record of repo's manifest d (evicted).
func (r *Region) ForgetPulled(ctx context.Context, repo string, d digest.Digest) error {
	return r.db.Update(ctx, func(tx *meta.Tx) error { return tx.ForgetPulled(ctx, repo, d) })
}

// Sweeps returns whether this region sweeps (by retention, by the cache's
// eviction) the manifests a region originated: its own, and, when it is
// the first member by name, those of regions no longer members, so each
// manifest is swept by one region and its delete replicates once.
func (r *Region) Sweeps(ctx context.Context) (func(origin string) bool, error) {
	members, err := r.memberNames(ctx)
	if err != nil {
		return nil, err
	}
	isMember := map[string]bool{}
	for _, m := range members {
		isMember[m] = true
	}
	adopts := len(members) > 0 && slices.Min(members) == r.cfg.Name
	return func(origin string) bool { return origin == r.cfg.Name || (adopts && !isMember[origin]) }, nil
}

// Evictor sweeps what the artifact cache evicts: the deletes made
// (repo@digest) and those a lock kept.
type Evictor func(ctx context.Context) (evicted []string, kept int, err error)

// SetEvictor has retention's runs sweep with e too.
func (r *Region) SetEvictor(e Evictor) { r.evictor = e }
