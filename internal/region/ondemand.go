package region

import "context"

// An artifact cache rule with --replicate on-demand keeps a cached
// image's bytes in the region that fetched it from the upstream and in
// the regions whose clients pull it: its manifests, tags and deletes
// replicate to every region as usual, its blobs do not. A region applies
// such a manifest without its blobs (the one exception to invariant 3,
// docs/design.md) and fetches a blob from the regions that hold it when a
// client first reads it there (read-through), verified and stored.

// OnDemandFunc reports whether repo's blobs are held only where pulled.
type OnDemandFunc func(ctx context.Context, repo string) bool

// SetOnDemand has the region ask f which repositories are on demand.
func (r *Region) SetOnDemand(f OnDemandFunc) { r.onDemand = f }

// OnDemand reports whether repo's blobs are held only in the regions
// that pulled them (replication and manifests applied from peers leave
// them out).
func (r *Region) OnDemand(ctx context.Context, repo string) bool {
	return r.onDemand != nil && r.onDemand(ctx, repo)
}
