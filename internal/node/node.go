// Package node runs one region node process: it opens the region's stores,
// serves the OCI API and health endpoints on a listener, runs background
// work, and shuts all of it down when its context ends.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/bounded"
	"github.com/georeg/georeg/internal/cache"
	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/dashboard"
	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/metrics"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/ociapi"
	"github.com/georeg/georeg/internal/outbound"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/tlsconf"
	"github.com/georeg/georeg/internal/transfer"
	"github.com/georeg/georeg/internal/webhook"
)

// pingTTL is how long an upstream's ping answer is kept: the cache rules'
// upstreams are pinged again every half of it (cache.Puller.RunWarm).
// An upstream that changes how it authenticates is heard of at the first
// refused request (the kept answer is dropped) or within pingTTL.
const pingTTL = 10 * time.Minute

// Node is an open region node, not yet serving.
type Node struct {
	Region      *region.Region
	log         *slog.Logger
	handler     http.Handler
	dataHandler http.Handler          // the data endpoint's, when it has one
	dataL       net.Listener          // where the data endpoint listens (SetDataListener)
	replicator  *replicate.Replicator // nil without a replication secret
	deliverer   *webhook.Deliverer
	importer    *transfer.Importer
	puller      *cache.Puller
	auth        *auth.Service
	tlsCert     string // with tlsKey: serve HTTPS
	tlsKey      string
}

// Open opens the region described by cfg.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (*Node, error) {
	r, err := region.Open(ctx, cfg.Region, log)
	if err != nil {
		return nil, fmt.Errorf("open region %s: %w", cfg.Region.Name, err)
	}
	r.Clock().SetMaxDrift(cfg.Replication.MaxClockDrift)
	mux := http.NewServeMux()
	scheme := "http://"
	if cfg.HTTP.TLSCert != "" {
		scheme = "https://"
	}
	regions := []mgmtapi.RegionInfo{{Name: cfg.Region.Name, Endpoint: scheme + cfg.HTTP.Listen}}
	for _, p := range cfg.Replication.Peers {
		ep := p.PublicEndpoint
		if ep == "" {
			ep = p.Endpoint
		}
		regions = append(regions, mgmtapi.RegionInfo{Name: p.Name, Endpoint: ep, Link: p.Endpoint})
	}
	peerTLS, err := tlsconf.Client(cfg.Replication.CAFile)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("replication.caFile: %w", err)
	}
	guard := auth.New(cfg.Auth, r, log.With("region", cfg.Region.Name, "component", "auth"))
	if cfg.Auth.Enabled {
		if err := guard.Bootstrap(ctx); err != nil {
			r.Close()
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	guard.SetAudit(func(ctx context.Context, actor, outcome, detail string) {
		if err := r.RecordAudit(ctx, actor, region.AuditLogin, "", outcome, detail); err != nil {
			log.WarnContext(ctx, "audit a login", "error", err)
		}
	})
	mux.Handle(auth.TokenPath, guard.TokenHandler())
	var status mgmtapi.StatusSource
	var signer *peerauth.Signer // nil without replication: calls to other regions carry no token
	// Regions and the front door authenticate with tokens derived from
	// the replication secret (internal/peerauth).
	keys := peerauth.FromSecret(cfg.Replication.Secret)
	verifier := peerauth.NewVerifier(keys, cfg.Region.Name, log.With("region", cfg.Region.Name, "component", "peerauth"))
	isProbe := verifier.Probe
	opts := ociapi.Options{BlobCopy: cfg.HTTP.BlobCopy, Auth: guard, IsProbe: isProbe, BodyIdle: cfg.HTTP.BodyIdleTimeout,
		MaxUploads: cfg.HTTP.MaxUploads, MaxUploadsPerClient: cfg.HTTP.MaxUploadsPerClient}
	if cfg.Auth.Enabled {
		// A key of this region's own, derived from the secret: only its
		// API signs the URLs its data endpoint serves.
		opts.DataKey = peerauth.Derive(cfg.Replication.Secret, "data-endpoint:"+cfg.Region.Name)
	}
	if cfg.HTTP.DataEndpoints {
		opts.DataURL = cfg.HTTP.DataURL
		if opts.DataURL == "" {
			opts.DataURL = "http://" + cfg.HTTP.DataListen
		}
	}
	n := &Node{Region: r, log: log, tlsCert: cfg.HTTP.TLSCert, tlsKey: cfg.HTTP.TLSKey}
	m := metrics.NewNode(cfg.Region.Name).WithRuntime()
	m.WatchWrites(r.WriteStats)
	m.WatchStorage(func() (metrics.Storage, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		u, _, err := r.RecentUsage(ctx)
		return metrics.Storage{Stored: u.StoredBytes, Logical: u.LogicalBytes, Manifests: u.ManifestBytes}, err == nil
	})
	m.WatchTraffic(func() []metrics.TrafficCount {
		var out []metrics.TrafficCount
		for _, t := range r.TrafficTotals() {
			out = append(out, metrics.TrafficCount{Kind: t.Kind, Peer: t.Peer, Bytes: t.Bytes})
		}
		return out
	})
	opts.Metrics = m
	if secret := cfg.Replication.Secret; secret != "" {
		// A region with a secret replicates: with its configured peers and
		// with every replica registered at run time.
		mux.Handle(peerauth.IdentityPath, verifier.IdentityHandler())
		mux.Handle(feed.Path, feed.Handler(r, verifier.Authorized))
		mux.Handle(feed.StatsPath, feed.StatsHandler(r, verifier.Authorized))
		mux.Handle(feed.SnapshotPath, feed.SnapshotHandler(r, verifier.Authorized, func(ctx context.Context) (bool, error) {
			if n.replicator == nil {
				return false, nil
			}
			// Ready now (the durable mark is written as status is computed:
			// it may lag), or Ready before and still catching up with a
			// region that joined since.
			st, err := n.replicator.Status(ctx)
			if err == nil && st.State == replicate.StateReady {
				return true, nil
			}
			return r.EverReady(ctx)
		}))
		replicate.Register(mux, r, verifier.Authorized)
		// No overall timeout: a 20 GiB layer takes as long as it takes.
		// Each request is bounded by its headers' deadline and its body's
		// idle deadline (internal/bounded), connecting by these.
		dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}
		hc := &http.Client{Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second,
			TLSClientConfig: peerTLS,
		}}
		rc := cfg.Replication.Config
		if rc.Endpoint == "" {
			rc.Endpoint = scheme + cfg.HTTP.Listen
		}
		signer = peerauth.NewSigner(keys, cfg.Region.Name, hc)
		n.replicator = replicate.New(r, rc, signer, hc, log.With("region", cfg.Region.Name))
		verifier.SetMembership(n.replicator.IsMember)
		opts.Peers = n.replicator
		opts.ReadThrough = !cfg.Replication.NoReadThrough
		opts.IsPeer = verifier.Authorized
		status = n.replicator
		r.SetMembers(n.replicator.Members)
		n.replicator.SetMetrics(m)
		rep := n.replicator
		m.WatchReplication(cfg.Region.Name, func(ctx context.Context) (metrics.Progress, error) {
			st, err := rep.Status(ctx)
			if err != nil {
				return metrics.Progress{}, err
			}
			p := metrics.Progress{Ready: st.State == replicate.StateReady, Objects: st.Progress.Objects,
				ObjectsTotal: st.Progress.ObjectsTotal, Bytes: st.Progress.Bytes, BytesTotal: st.Progress.BytesTotal,
				StagedBytes: st.StagedBytes}
			for _, ps := range st.Peers {
				p.Peers = append(p.Peers, metrics.PeerBacklog{Peer: ps.Peer, Events: ps.Behind, Bytes: ps.Backlog})
			}
			return p, nil
		})
	}
	n.auth = guard
	n.deliverer = webhook.NewDeliverer(r, func(err error) bool { return errors.Is(err, region.ErrNoWebhook) },
		cfg.Webhooks, log.With("region", cfg.Region.Name, "component", "webhook"))
	n.deliverer.SetMetrics(m)
	r.OnGC(func(rep region.GCReport) {
		var err error
		if rep.Error != "" {
			err = errors.New(rep.Error)
		}
		m.GC(rep.DryRun, err, int64(rep.BlobsDeleted), rep.BytesFreed)
	})
	mux.Handle(dashboard.Path, dashboard.Handler())
	mgmt := mgmtapi.New(r, regions, status)
	browser := mgmtapi.NewBrowserGuard(!cfg.Auth.Enabled, cfg.HTTP.AllowedHosts, cfg.Replication.Endpoint, cfg.HTTP.DataURL)
	mgmt.SetBrowserGuard(browser)
	own := cfg.HTTP.Listen
	if u, err := url.Parse(cfg.Replication.Endpoint); err == nil && u.Host != "" {
		own = u.Host
	}
	guard.SetHosts(browser.AllowsHost, own)
	mgmt.SetAccess(guard, opts.IsPeer, isProbe, signer,
		&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: peerTLS}})
	// Imports, webhooks and registered replica endpoints reach only what
	// the outbound policy allows (internal/outbound).
	configured := cfg.Outbound.AllowedPrefixes()
	policy := outbound.New(func(ctx context.Context) ([]netip.Prefix, error) {
		out := append([]netip.Prefix(nil), configured...)
		s, err := r.Setting(ctx, auth.KindRegistry, auth.SettingOutboundRules)
		if err != nil {
			return out, nil // none set
		}
		var rules auth.OutboundRules
		if err := json.Unmarshal(s.Value, &rules); err != nil {
			return out, err
		}
		for _, a := range rules.Allow {
			if p, err := auth.ParsePrefix(a); err == nil {
				out = append(out, p)
			}
		}
		return out, nil
	})
	outDialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	n.deliverer.SetTransport(&http.Transport{DialContext: policy.DialContext(outDialer), Proxy: http.ProxyFromEnvironment,
		ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second})
	mgmt.SetOutbound(policy)
	mgmt.SetPeersTLS(cfg.Auth.Enabled && !cfg.Replication.InsecurePeers)
	// Imports and the artifact cache reach upstream registries: a hung
	// one is cut (no headers, or no body byte, for 30 s).
	// Their pings (GET /v2/, asked before each repository) are kept for
	// pingTTL, and the cache rules' upstreams are pinged as the rules
	// arrive and before that runs out: no ping before a cold pull's
	// manifest.
	var upstreams http.RoundTripper = &bounded.Transport{
		Base: outbound.LimitErrorBodies(&http.Transport{DialContext: policy.DialContext(outDialer), TLSClientConfig: peerTLS,
			Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}),
		Limits: func(*http.Request) bounded.Limits {
			return bounded.Limits{Header: 30 * time.Second, Idle: 30 * time.Second}
		},
	}
	pings := transfer.CachePings(upstreams, pingTTL)
	upstreams = pings
	n.importer = transfer.New(r, upstreams, log.With("region", cfg.Region.Name, "component", "import"))
	mgmt.SetImporter(n.importer)
	puller := cache.New(r, n.importer, upstreams, log.With("region", cfg.Region.Name, "component", "cache"))
	n.puller = puller
	if n.replicator != nil {
		// One region fetches each image for the whole registry.
		puller.SetRegions(cfg.Region.Name, n.replicator.Members, mgmt.AskToFetch)
		// What no region pulled for a rule's period is evicted.
		puller.SetEviction(n.replicator.Members, mgmt.PeerPulls)
	}
	r.SetEvictor(puller.SweepUntouched)
	r.SetOnDemand(puller.OnDemand)
	puller.SetWarmer(pings.Warm, pingTTL/2)
	puller.SetMetrics(m)
	opts.Upstream = puller
	mgmt.SetCache(puller)
	mgmt.Register(mux)
	api := ociapi.New(r, log.With("region", cfg.Region.Name), opts)
	n.handler = api.Handler(mux)
	if cfg.HTTP.DataEndpoints {
		n.dataHandler = api.DataHandler()
	}
	return n, nil
}

// Handler returns the node's HTTP surface.
func (n *Node) Handler() http.Handler { return n.handler }

// Replicator returns the node's replicator; nil in a region without a
// replication secret (a registry of one region).
func (n *Node) Replicator() *replicate.Replicator { return n.replicator }

// SetDataListener gives the data endpoint its listener; Serve serves it.
func (n *Node) SetDataListener(l net.Listener) { n.dataL = l }

// Serve serves on every listener until ctx ends, then shuts down
// gracefully (in-flight requests get up to 10 s) and closes the stores. It
// returns only after every goroutine it started has exited.
func (n *Node) Serve(ctx context.Context, listeners ...net.Listener) error {
	defer n.Region.Close()
	srv := &http.Server{
		Handler:           n.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No read or write timeout: a 20 GiB layer takes as long as it
		// takes; a stalled client is cut by TCP keepalive.
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context {
			return context.WithoutCancel(ctx)
		},
	}
	fresh := trackFresh(srv)
	srv.RegisterOnShutdown(func() {
		n.Region.Drain()
		fresh.closeAll()
	})
	g, gctx := errgroup.WithContext(ctx)
	for _, l := range listeners {
		n.log.InfoContext(ctx, "serving", "region", n.Region.Name(), "addr", l.Addr().String(), "gomaxprocs", runtime.GOMAXPROCS(0))
		g.Go(func() error {
			if err := n.serve(srv, l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if n.dataHandler != nil && n.dataL != nil {
		data := &http.Server{Handler: n.dataHandler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		n.log.InfoContext(ctx, "serving blob data", "region", n.Region.Name(), "addr", n.dataL.Addr().String())
		g.Go(func() error {
			if err := n.serve(data, n.dataL); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return data.Shutdown(sctx)
		})
	}
	// Jobs one node of the region runs at a time hold a lease (see
	// region.RunLeased); deliveries and imports run on every node (each
	// delivery is claimed in the store, each import runs where it was
	// asked for).
	g.Go(func() error { return n.Region.RunLeased(gctx, "housekeeping", n.Region.Run) })
	g.Go(func() error { return n.Region.RunLeased(gctx, "gc", n.Region.RunGC) })
	g.Go(func() error { return n.Region.RunLeased(gctx, "retention", n.Region.RunRetention) })
	if n.Region.Keyring() != nil {
		g.Go(func() error { return n.Region.RunLeased(gctx, "encryption", n.Region.RunEncryption) })
	}
	g.Go(func() error { return n.Region.Listen(gctx) })
	g.Go(func() error { return n.Region.RunLocal(gctx) })
	g.Go(func() error { return n.Region.RunTraffic(gctx) })
	g.Go(func() error { return n.Region.RunSpace(gctx) })
	g.Go(func() error { return n.deliverer.Run(gctx) })
	g.Go(func() error { return n.auth.Run(gctx) })
	g.Go(func() error { return n.importer.Run(gctx) })
	g.Go(func() error { return n.puller.RunWarm(gctx) })
	if n.replicator != nil {
		g.Go(func() error { return n.replicator.Run(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// serve serves srv on l, over TLS when the node has a certificate.
func (n *Node) serve(srv *http.Server, l net.Listener) error {
	if n.tlsCert != "" {
		return srv.ServeTLS(l, n.tlsCert, n.tlsKey)
	}
	return srv.Serve(l)
}

// freshConns are connections that have not sent a request yet. Shutdown
// counts such a connection as busy for 5 s (net/http, issue 22682); an HTTP
// client that dialed one and then used another never sends on it, and a
// node's shutdown waited those 5 s. They are closed when shutdown starts.
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func trackFresh(srv *http.Server) *freshConns {
	f := &freshConns{conns: map[net.Conn]bool{}}
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if st == http.StateNew {
			f.conns[c] = true
		} else {
			delete(f.conns, c)
		}
	}
	return f
}

func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
}
