package region

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/georeg/georeg/internal/meta"
)

// A region's nodes share its jobs (following each peer, garbage
// collection, retention, housekeeping): a job runs on the node that holds
// its lease in the metadata store, one node at a time, and moves to
// another node within leaseTTL when that node dies. With SQLite the one
// node holds every lease at once; its name is stable across restarts
// (Config.Node), so a restarted node takes its leases back immediately.

// Lease timing.
const (
	leaseTTL   = 15 * time.Second // a lease not renewed for this long is free
	leaseRenew = 5 * time.Second  // how often a holder renews
	leaseRetry = 5 * time.Second  // how often a node asks for a lease it lacks
)

// Node returns this node's name among its region's nodes.
func (r *Region) Node() string { return r.cfg.Node }

// Shared reports whether other nodes use this region's stores too.
func (r *Region) Shared() bool { return r.db.Shared() }

// RunLeased runs job while this node holds lease name, until ctx ends:
// it asks for the lease every leaseRetry (with jitter), runs job with a
// context that ends when the lease is lost (another node took it: this
// one could not renew it in time), renews it every leaseRenew, and asks
// again after job returns. It returns nil when ctx ends, after job has.
func (r *Region) RunLeased(ctx context.Context, name string, job func(context.Context) error) error {
	for ctx.Err() == nil {
		ok, err := r.db.AcquireLease(ctx, name, r.cfg.Node, leaseTTL, r.now())
		if err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "ask for a job's lease", "lease", name, "error", err)
		}
		if ok {
			r.log.DebugContext(ctx, "job lease held", "lease", name, "node", r.cfg.Node)
			r.holdWhile(ctx, name, job)
		}
		// Not held, lost, or the job ended early (nothing scheduled):
		// ask again later.
		t := time.NewTimer(leaseRetry + rand.N(leaseRetry/2))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return nil
}

// holdWhile runs job while renewing lease name, and ends job when a renewal
// finds another holder or none succeeds within leaseTTL.
func (r *Region) holdWhile(ctx context.Context, name string, job func(context.Context) error) {
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- job(jctx) }()
	renewed := r.now()
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
				r.log.WarnContext(ctx, "job ended with an error", "lease", name, "error", err)
			}
			if ctx.Err() != nil {
				// Stopping: let another node take it now rather than later.
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = r.db.ReleaseLease(rctx, name, r.cfg.Node)
				rcancel()
			}
			return
		case <-t.C:
			ok, err := r.db.AcquireLease(ctx, name, r.cfg.Node, leaseTTL, r.now())
			switch {
			case err == nil && ok:
				renewed = r.now()
				continue
			case err == nil:
				r.log.WarnContext(ctx, "job lease taken by another node: stopping the job here", "lease", name)
			case r.now().Sub(renewed) < leaseTTL-leaseRenew:
				r.log.WarnContext(ctx, "renew a job's lease", "lease", name, "error", err)
				continue
			default:
				r.log.WarnContext(ctx, "job lease not renewed in time: stopping the job here", "lease", name, "error", err)
			}
			cancel()
			<-done
			return
		}
	}
}

// Listen hears the other nodes of the region (PostgreSQL notifications),
// until ctx ends: a feed append wakes this node's feed long-polls, a change
// of tags or manifests invalidates them in its cache (invariant 5). With
// SQLite it returns at once: the one node wakes and invalidates its own.
func (r *Region) Listen(ctx context.Context) error {
	return r.db.Listen(ctx, meta.Listeners{
		Feed:    r.feed.notify,
		Changed: r.cache.invalidateRepo,
		Failed: func(err error) {
			r.log.WarnContext(ctx, "listen for other nodes' changes; reconnecting (the cache is not used meanwhile)", "error", err)
		},
	})
}

// Publish records body (JSON) as the state of key in table ("peer_status",
// "import_jobs"), written by this node: the state of a job it holds, for
// the region's other nodes to report.
func (r *Region) Publish(ctx context.Context, table, key, body string) error {
	return r.db.Publish(ctx, table, key, r.cfg.Node, body, r.now())
}

// Published returns what a node last published of key in table, the node
// and when; meta.ErrNotFound (isNotFound) when nothing was.
func (r *Region) Published(ctx context.Context, table, key string) (body, node string, at time.Time, err error) {
	p, err := r.db.Published(ctx, table, key)
	if err != nil {
		return "", "", time.Time{}, err
	}
	return p.Body, p.Node, p.Updated, nil
}

// How often a job's state is published (PublishEvery), and after how long
// without a new one other nodes take its publisher for gone.
const (
	PublishInterval = time.Second
	PublishedStale  = 15 * time.Second
)

// PublishEvery publishes snapshot() (as JSON) as the state of key in table
// every PublishInterval until ctx ends; a snapshot that reports false is
// skipped. Failures are logged and the next round tries again.
func (r *Region) PublishEvery(ctx context.Context, table, key string, snapshot func() (any, bool)) {
	t := time.NewTicker(PublishInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, ok := snapshot()
		if !ok {
			continue
		}
		body, err := json.Marshal(v)
		if err == nil {
			err = r.Publish(ctx, table, key, string(body))
		}
		if err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "publish a job's state for the region's other nodes", "table", table, "key", key, "error", err)
		}
	}
}
