package region

import (
	"context"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/meta"
)

// Kinds of traffic a node counts (docs/observability.md, Usage).
const (
	// TrafficServed: blob bytes sent to clients from this region's store.
	TrafficServed = "served"
	// TrafficServedReadThrough: blob bytes sent to clients as they were
	// read through from a peer.
	TrafficServedReadThrough = "served_readthrough"
	// TrafficReceived: blob bytes received from a peer to replicate
	// (the feed, backfill, anti-entropy's repairs).
	TrafficReceived = "received"
	// TrafficReceivedReadThrough: blob bytes received from a peer for a
	// client's read-through.
	TrafficReceivedReadThrough = "received_readthrough"
	// The artifact cache's, with the cache rule as the peer:
	// TrafficCacheUpstream: blob bytes fetched from the rule's upstream;
	// TrafficCacheServed: blob bytes of the rule's repositories sent to
	// clients; TrafficCacheHits and TrafficCacheMisses count pulls of a
	// cached repository's manifest (a count, not bytes): served as held
	// (or stale), or fetched (here or by another region for the registry).
	TrafficCacheUpstream = "cache_upstream"
	TrafficCacheServed   = "cache_served"
	TrafficCacheHits     = "cache_hits"
	TrafficCacheMisses   = "cache_misses"
)

// trafficEvery is how often a node adds what it counted to the store:
// the request path only adds to memory, and a node that dies loses at
// most this much of its counts.
const trafficEvery = 10 * time.Second

type trafficKey struct{ kind, peer string }

// traffic is a node's counts: pending (not yet in the store) and totals
// since the process started (for /metrics).
type traffic struct {
	mu      sync.Mutex
	pending map[trafficKey]int64
	totals  map[trafficKey]int64
	pulls   map[pullKey]time.Time // pulls noted, not yet recorded (pulls.go)
	// flushing are the pulls being recorded now: LastPulled still counts
	// them until their transaction commits.
	flushing map[pullKey]time.Time
}

// CountTraffic counts n bytes of kind with peer ("" for clients): in
// memory, recorded in the store within trafficEvery.
func (r *Region) CountTraffic(kind, peer string, n int64) {
	if n <= 0 {
		return
	}
	t := &r.traffic
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending == nil {
		t.pending, t.totals = map[trafficKey]int64{}, map[trafficKey]int64{}
	}
	k := trafficKey{kind, peer}
	t.pending[k] += n
	t.totals[k] += n
}

// TrafficTotals returns what this node counted since it started, by kind
// and peer.
func (r *Region) TrafficTotals() []meta.Traffic {
	t := &r.traffic
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]meta.Traffic, 0, len(t.totals))
	for k, n := range t.totals {
		out = append(out, meta.Traffic{Kind: k.kind, Peer: k.peer, Bytes: n})
	}
	return out
}

// FlushTraffic adds the node's pending counts (and pull notes) to the
// store, in one transaction; on failure they stay pending.
func (r *Region) FlushTraffic(ctx context.Context) error {
	t := &r.traffic
	t.mu.Lock()
	pending, pulls := t.pending, t.pulls
	t.pending, t.pulls, t.flushing = nil, nil, pulls
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.flushing = nil
		t.mu.Unlock()
	}()
	if len(pending) == 0 && len(pulls) == 0 {
		return nil
	}
	now := r.now()
	err := r.db.UpdateTraffic(ctx, func(tx *meta.Tx) error {
		for k, n := range pending {
			if err := tx.AddTraffic(ctx, now, r.cfg.Node, k.kind, k.peer, n); err != nil {
				return err
			}
		}
		for k, at := range pulls {
			if err := tx.NotePulled(ctx, k.repo, k.d, at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.mu.Lock()
		if t.pending == nil {
			t.pending = map[trafficKey]int64{}
		}
		for k, n := range pending {
			t.pending[k] += n
		}
		if t.pulls == nil {
			t.pulls = map[pullKey]time.Time{}
		}
		for k, at := range pulls {
			if at.After(t.pulls[k]) {
				t.pulls[k] = at
			}
		}
		t.mu.Unlock()
	}
	return err
}

// RunTraffic records the node's counts every trafficEvery, and once more
// when ctx ends. Every node runs it.
func (r *Region) RunTraffic(ctx context.Context) error {
	tk := time.NewTicker(trafficEvery)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = r.FlushTraffic(fctx)
			return nil
		case <-tk.C:
		}
		if err := r.FlushTraffic(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "record traffic counts", "error", err)
		}
	}
}

// TrafficSince returns the region's traffic (every node's) since since,
// this node's pending counts recorded first.
func (r *Region) TrafficSince(ctx context.Context, since time.Time) ([]meta.Traffic, error) {
	if err := r.FlushTraffic(ctx); err != nil {
		return nil, err
	}
	return r.db.TrafficSince(ctx, since)
}
