package region

import (
	"context"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
)

// The usage figure metrics and the dashboard show (RecentUsage) is read
// again once it is usageFigureAge old, or a hundred times what its last
// read took if that is longer: reading it reads every blob link, and so
// a region spends at most 1 % of a core on it however large it is.
const (
	usageFigureAge  = 10 * time.Second
	usageReadFactor = 100
)

// recentUsage is the last usage figure read, for RecentUsage.
type recentUsage struct {
	mu   sync.Mutex
	u    meta.Usage
	read time.Time
	took time.Duration
}

// Usage adds up what the region stores (meta.DB.Usage), with what soft
// delete holds.
func (r *Region) Usage(ctx context.Context) (meta.Usage, error) {
	u, err := r.db.Usage(ctx)
	if err != nil {
		return u, err
	}
	kept, err := r.deletedManifests(ctx, "", maxHeldCounted)
	if err != nil {
		return u, err
	}
	blobs := map[digest.Digest]int64{}
	for _, m := range kept {
		parsed, err := oci.ParseManifest(m.MediaType, m.Payload)
		if err != nil {
			continue // kept as stored; not this figure's to judge
		}
		for _, b := range parsed.Blobs() {
			blobs[b.Digest] = b.Size
		}
	}
	u.RestorableManifests = int64(len(kept))
	for _, n := range blobs {
		u.HeldBytes += n
	}
	return u, nil
}

// maxHeldCounted bounds the restorable manifests Usage reads.
const maxHeldCounted = 100_000

// RecentUsage is Usage as read a little while ago (above), with when it
// was read: for figures polled often (metrics, the dashboard). Callers
// that arrive while it is read wait for that read.
func (r *Region) RecentUsage(ctx context.Context) (meta.Usage, time.Time, error) {
	c := &r.recentUsage
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read.IsZero() || time.Since(c.read) > max(usageFigureAge, usageReadFactor*c.took) {
		start := time.Now()
		u, err := r.Usage(ctx)
		if err != nil {
			return u, c.read, err
		}
		c.u, c.read, c.took = u, time.Now(), time.Since(start)
	}
	return c.u, c.read, nil
}

// RepoUsage returns what repository repo holds in the region.
func (r *Region) RepoUsage(ctx context.Context, repo string) (meta.RepoUsage, error) {
	return r.db.RepoUsage(ctx, repo)
}

// TopRepositories returns the n repositories that hold the most here.
func (r *Region) TopRepositories(ctx context.Context, n int) ([]meta.RepoUsage, error) {
	return r.db.TopRepositories(ctx, n)
}
