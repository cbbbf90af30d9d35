package region

import (
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Leases keep garbage collection's sweep off a blob whose bytes are on
// their way to a link: an upload between its commit and its link, a
// replication or read-through fetch until its apply, an import until it
// links. The sweep skips a leased blob (checked in the transaction that
// would delete it, under the lease lock); the grace period covers what
// a lease does not (a node that died holding one holds none after a
// restart).
type leases struct {
	mu      sync.Mutex
	count   map[digest.Digest]int
	touched map[string]time.Time // repo@digest -> last HEAD
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

// TouchBlob records that a client checked repo's blob d (a HEAD before
// a push that then skips the upload): garbage collection keeps the link
// for a grace period from now, as if it had been pushed again.
func (r *Region) TouchBlob(repo string, d digest.Digest) {
	l := &r.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.touched == nil {
		l.touched = map[string]time.Time{}
	}
	if len(l.touched) >= maxTouched {
		cutoff := r.now().Add(-r.cfg.GCGrace)
		for k, at := range l.touched {
			if at.Before(cutoff) {
				delete(l.touched, k)
			}
		}
	}
	if len(l.touched) < maxTouched {
		l.touched[repo+"@"+d.String()] = r.now()
	}
}

// maxTouched bounds the touches remembered; past it, a touch is dropped
// (its link keeps the time of its last push).
const maxTouched = 100_000

// touchedSince reports whether repo's blob d was touched after t.
func (r *Region) touchedSince(repo string, d digest.Digest, t time.Time) bool {
	l := &r.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.touched[repo+"@"+d.String()]
	return ok && at.After(t)
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
