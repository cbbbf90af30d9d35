package region

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
)

// Leases keep garbage collection's sweep off a blob whose bytes are on
// their way to a link: an upload between its commit and its link, a
// replication or read-through fetch until its apply, an import until it
// links. The sweep skips a leased blob (checked in the transaction that
// would delete it, under the lease lock); the grace period covers what
// a lease does not (a node that died holding one holds none after a
// restart).
type leases struct {
	mu    sync.Mutex
	count map[digest.Digest]int
}

// Lease protects blob d from the sweep until the returned release is
// called. Leases nest.
func (r *Region) Lease(d digest.Digest) (release func()) {
	l := &r.leases
	l.mu.Lock()
	if l.count == nil {
		l.count = map[digest.Digest]int{}
	}
	l.count[d]++
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			if l.count[d]--; l.count[d] <= 0 {
				delete(l.count, d)
			}
			l.mu.Unlock()
		})
	}
}

// LeaseToLink leases blob d for bytes the caller is about to write, or
// look for, and then link: this node's lease, and one every node's sweep
// sees (on PostgreSQL, meta.LeaseBlob); release ends both, after the link
// committed. linkLeased trusts the bytes are there while the lease holds:
// no sweep deletes a leased blob, so bytes written or found after the
// lease was taken stay.
func (r *Region) LeaseToLink(ctx context.Context, d digest.Digest) (*meta.BlobLease, func()) {
	release := r.Lease(d)
	lease := r.db.LeaseBlob(ctx, d)
	return lease, func() {
		lease.Release()
		release()
	}
}

// TouchBlob records that a client checked repo's blob d (a HEAD before a
// push that then skips the upload): its link is dated anew, so garbage
// collection keeps it for a grace period from now, as if it had been
// pushed again. The link is written only when it is older than half the
// grace period, so a HEAD rarely writes; the date lives in the metadata
// store, so a collection on any node of the region sees it.
func (r *Region) TouchBlob(ctx context.Context, repo string, d digest.Digest) error {
	linked, err := r.db.BlobLinked(ctx, repo, d)
	if err != nil || r.now().Sub(linked) < r.cfg.GCGrace/2 {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	return r.db.Update(ctx, func(tx *meta.Tx) error { return tx.TouchBlob(ctx, repo, d, r.now()) })
}

// leased runs fn with the lease lock held and reports whether d is
// leased; fn runs only when it is not.
func (r *Region) unlessLeased(d digest.Digest, fn func() error) (bool, error) {
	l := &r.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count[d] > 0 {
		return true, nil
	}
	return false, fn()
}
