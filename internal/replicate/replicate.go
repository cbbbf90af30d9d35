package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/metrics"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/region"
)

// Peer is another region of the registry.
type Peer struct {
	Name     string `yaml:"name"`
	Endpoint string `yaml:"endpoint"` // base URL replication uses, e.g. http://127.0.0.1:5002
	// PublicEndpoint is where clients reach the region, when it differs
	// from Endpoint (replication through a link of its own).
	PublicEndpoint string `yaml:"publicEndpoint,omitempty"`
}

// Config says whom to replicate with.
type Config struct {
	// Peers, nearest first as far as known: content is fetched from the
	// nearest peer that holds it, and read-through asks peers in that
	// order. Once a peer's round trip is measured (its small requests,
	// every 2 s), the measured order replaces this one.
	Peers []Peer `yaml:"peers"`
	// Wait is how long one feed request long-polls (default 30 s).
	Wait time.Duration `yaml:"wait"`
	// AntiEntropyInterval is how often each peer's repositories are
	// compared and repaired (default 5 minutes).
	AntiEntropyInterval time.Duration `yaml:"antiEntropyInterval"`
	// WedgedAfter is how long replication from a peer that answers may
	// make no progress while behind before the region reports it wedged
	// (default 2 minutes).
	WedgedAfter time.Duration `yaml:"wedgedAfter"`
	// IdleTimeout bounds every wait on a peer (default 15 s): its answer's
	// headers (a feed long-poll: Wait plus this), and each stretch of a
	// body without a byte. A transfer that stalls longer is cut and
	// resumed, from another region that holds the blob when one does.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// ParkAfter is how long a feed record may fail for reasons on the
	// peer's side (content that cannot be fetched) before it is parked:
	// retried apart, so the records after it apply meanwhile (default 30 s).
	ParkAfter time.Duration `yaml:"parkAfter"`
	// MaxClockDrift is how far ahead of this region's clock a version
	// from a peer may be (default 5 minutes, hlc.DefaultMaxDrift): a record
	// further ahead is refused (retried until real time has caught up), so
	// a peer with a runaway clock or a forged version cannot push this
	// region's versions past it.
	MaxClockDrift time.Duration `yaml:"maxClockDrift"`
	// FeedHorizon is how long a region that stopped applying this
	// region's feed holds its records back from compaction (default 7
	// days): past it, the records every other region applied are deleted,
	// and that region repairs from this one's state when it is back.
	FeedHorizon time.Duration `yaml:"feedHorizon"`
	// CompactInterval is how often the feed is compacted (default 1
	// minute).
	CompactInterval time.Duration `yaml:"compactInterval"`
	// Endpoint is the base URL other regions reach this region at
	// (default: http(s)://<http.listen>). The region registers itself in
	// the registry's replica settings under it, so a region configured
	// with one peer learns this one from it and follows it.
	Endpoint string `yaml:"endpoint"`
}

var endpointRegexp = regexp.MustCompile(`^https?://[^/\s]+/?$`)

// Validate reports every problem with its field path.
func (c Config) Validate(self string) error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range c.Peers {
		switch {
		case p.Name == self:
			errs = append(errs, fmt.Errorf("peers[%d].name: %q is this region", i, p.Name))
		case seen[p.Name]:
			errs = append(errs, fmt.Errorf("peers[%d].name: %q twice", i, p.Name))
		case p.Name == "":
			errs = append(errs, fmt.Errorf("peers[%d].name: empty", i))
		}
		seen[p.Name] = true
		if !endpointRegexp.MatchString(p.Endpoint) {
			errs = append(errs, fmt.Errorf("peers[%d].endpoint: %q must be http(s)://host:port", i, p.Endpoint))
		}
	}
	if c.Endpoint != "" && !endpointRegexp.MatchString(c.Endpoint) {
		errs = append(errs, fmt.Errorf("endpoint: %q must be http(s)://host:port", c.Endpoint))
	}
	if c.Wait < 0 {
		errs = append(errs, fmt.Errorf("wait: %s is negative", c.Wait))
	}
	if c.WedgedAfter < 0 {
		errs = append(errs, fmt.Errorf("wedgedAfter: %s is negative", c.WedgedAfter))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("idleTimeout: %s is negative", c.IdleTimeout))
	}
	if c.ParkAfter < 0 {
		errs = append(errs, fmt.Errorf("parkAfter: %s is negative", c.ParkAfter))
	}
	if c.MaxClockDrift < 0 {
		errs = append(errs, fmt.Errorf("maxClockDrift: %s is negative", c.MaxClockDrift))
	}
	if c.FeedHorizon < 0 {
		errs = append(errs, fmt.Errorf("feedHorizon: %s is negative", c.FeedHorizon))
	}
	if c.CompactInterval < 0 {
		errs = append(errs, fmt.Errorf("compactInterval: %s is negative", c.CompactInterval))
	}
	if c.AntiEntropyInterval < 0 {
		errs = append(errs, fmt.Errorf("antiEntropyInterval: %s is negative", c.AntiEntropyInterval))
	}
	return errors.Join(errs...)
}

// Replicator follows every peer's feed into one region. Its peers are the
// static ones of its configuration and the replicas registered as
// settings (kind "replica"), which any region can add or remove at run
// time; Run reconciles its followers with them every second.
type Replicator struct {
	region              *region.Region
	static              []Peer
	endpoint            string           // where peers reach this region (Config.Endpoint)
	signer              *peerauth.Signer // this region's tokens for its peers
	http                *http.Client
	wait                time.Duration
	antiEntropyInterval time.Duration
	feedHorizon         time.Duration
	compactInterval     time.Duration
	wedgedAfter         time.Duration
	idle                time.Duration // Config.IdleTimeout
	parkAfter           time.Duration // Config.ParkAfter
	log                 *slog.Logger

	mu      sync.RWMutex
	sources []*source // current peers, nearest first (nearestFirst); replaced, never mutated
	tracker *tracker
	metrics *metrics.Node // nil: none
	join    joiner        // a join from a snapshot (snapshot.go)
}

// SetMetrics has the replicator count applied records and observe lag.
func (p *Replicator) SetMetrics(m *metrics.Node) { p.metrics = m }

// New returns a replicator into r from cfg's peers, authenticating with
// signer's tokens over hc (which must have no overall timeout).
func New(r *region.Region, cfg Config, signer *peerauth.Signer, hc *http.Client, log *slog.Logger) *Replicator {
	p := &Replicator{region: r, static: cfg.Peers, endpoint: strings.TrimSuffix(cfg.Endpoint, "/"), signer: signer, http: hc,
		wait: cfg.Wait, antiEntropyInterval: cfg.AntiEntropyInterval, log: log, tracker: newTracker(),
		feedHorizon: cfg.FeedHorizon, compactInterval: cfg.CompactInterval}
	p.join.turn = make(chan struct{}, 1)
	if p.feedHorizon == 0 {
		p.feedHorizon = DefaultFeedHorizon
	}
	if p.compactInterval == 0 {
		p.compactInterval = DefaultCompactInterval
	}
	if p.wait == 0 {
		p.wait = 30 * time.Second
	}
	if p.antiEntropyInterval == 0 {
		p.antiEntropyInterval = 5 * time.Minute
	}
	p.wedgedAfter = cfg.WedgedAfter
	if p.wedgedAfter == 0 {
		p.wedgedAfter = 2 * time.Minute
	}
	p.idle, p.parkAfter = cfg.IdleTimeout, cfg.ParkAfter
	if p.idle == 0 {
		p.idle = 15 * time.Second
	}
	if p.parkAfter == 0 {
		p.parkAfter = 30 * time.Second
	}
	for _, peer := range cfg.Peers {
		p.sources = append(p.sources, newSource(peer, signer, hc, p.idle))
	}
	return p
}

// PeerOrder returns the current peers' names, nearest first.
func (p *Replicator) PeerOrder() []string {
	var out []string
	for _, s := range p.peers() {
		out = append(out, s.name)
	}
	return out
}

// peers returns the current peers, nearest first. The slice is not
// modified afterwards: callers may range over it freely.
func (p *Replicator) peers() []*source {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.sources
}

// reconcileEvery is how often Run compares its followers with the
// registered replicas.
const reconcileEvery = time.Second

// follower is one running peer: its feed follower and anti-entropy loop.
type follower struct {
	src    *source
	cancel context.CancelFunc
	done   chan struct{}
}

// Run follows every peer until ctx ends, starting and stopping followers
// as replicas are registered and removed; it returns after every follower
// has stopped.
func (p *Replicator) Run(ctx context.Context) error {
	cctx, stopCompacting := context.WithCancel(ctx)
	compacted := make(chan struct{})
	go func() { defer close(compacted); p.compact(cctx) }()
	defer func() { stopCompacting(); <-compacted }()
	running := map[string]*follower{}
	stop := func(f *follower) { f.cancel(); <-f.done }
	defer func() {
		for _, f := range running {
			stop(f)
		}
	}()
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	registered := false
	for {
		if !registered {
			registered = p.register(ctx)
		}
		// Every round: a later write of this region's setting (replication
		// create or update through another region) may not carry the mark.
		p.announceReady(ctx)
		want, err := p.desired(ctx)
		if p.region.Retired() {
			want = nil // deleted with --purge: follow nobody
		}
		if err != nil && ctx.Err() == nil {
			p.log.WarnContext(ctx, "read registered replicas", "error", err)
		}
		if err == nil {
			var sources []*source
			keep := map[string]bool{}
			for _, peer := range want {
				keep[peer.Name] = true
				f, ok := running[peer.Name]
				if ok && f.src.base != strings.TrimSuffix(peer.Endpoint, "/") {
					stop(f) // moved: follow it at its new endpoint
					ok = false
				}
				if !ok {
					f = p.start(ctx, newSource(peer, p.signer, p.http, p.idle))
					running[peer.Name] = f
					p.log.InfoContext(ctx, "following peer", "peer", peer.Name, "endpoint", peer.Endpoint)
				}
				sources = append(sources, f.src)
			}
			for name, f := range running {
				if !keep[name] {
					stop(f)
					delete(running, name)
					p.tracker.forget(name)
					p.log.InfoContext(ctx, "stopped following peer", "peer", name)
				}
			}
			p.mu.Lock()
			p.sources = nearestFirst(sources)
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// start follows peer s: its feed and anti-entropy, on whichever node of
// the region holds the lease "follow/<peer>" (with one node, this one, at
// once). With several nodes, the holder publishes its progress with the
// peer every second, so every node reports the same status.
func (p *Replicator) start(ctx context.Context, s *source) *follower {
	ctx, cancel := context.WithCancel(ctx)
	f := &follower{src: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		_ = p.region.RunLeased(ctx, "follow/"+s.name, func(ctx context.Context) error {
			p.tracker.follow(s.name, true)
			defer p.tracker.follow(s.name, false)
			var g errgroup.Group
			g.Go(func() error { p.follow(ctx, s); return nil })
			g.Go(func() error { p.antiEntropy(ctx, s); return nil })
			g.Go(func() error { p.refreshStats(ctx, s); return nil })
			g.Go(func() error { p.runParked(ctx, s); return nil })
			if p.region.Shared() {
				g.Go(func() error { p.publish(ctx, s); return nil })
			}
			return g.Wait()
		})
	}()
	return f
}
