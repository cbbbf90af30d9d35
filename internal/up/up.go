// Package up runs a whole registry on one machine: several regions, each a
// region node with its own listener and data folder, replicating with each
// other. `georeg up` and the multi-region tests use it.
package up

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/encryption"
	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/node"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/route"
	"github.com/georeg/georeg/internal/tlsconf"
	"github.com/georeg/georeg/internal/webhook"
)

// RegionSpec is one region to run.
type RegionSpec struct {
	Name   string
	Listen string   // host:port; port 0 picks a free one
	Extra  []string // more addresses serving the same region (":5000" until the front door)
}

// Config describes the registry.
type Config struct {
	DataDir string // each region gets DataDir/<name>
	Secret  string // replication secret; random when empty
	Regions []RegionSpec
	// Link returns the base URL region from uses to reach region to, whose
	// own URL is url: a fault injector, say. Nil: url itself (or a
	// simulated link when Distance is set).
	Link func(from, to, url string) (string, error)
	// Distance, when set, simulates the network between regions on
	// replication traffic: region from reaches region to through a proxy
	// shaped as it returns (ok false: direct), which also takes faults
	// (Registry.Link).
	Distance func(from, to string) (link.Shape, bool)
	// AntiEntropyInterval is how often regions compare and repair their
	// repositories (0: the default, 5 minutes).
	AntiEntropyInterval time.Duration
	// FeedHorizon and CompactInterval: replicate.Config's (0: defaults).
	FeedHorizon, CompactInterval time.Duration
	// WedgedAfter, IdleTimeout and ParkAfter are replicate.Config's for
	// every region.
	WedgedAfter, IdleTimeout, ParkAfter time.Duration
	// FrontDoor, when set, is where the front door listens (127.0.0.1:5000
	// for `georeg up`): clients from 127.0.0.<i+1> belong to the i-th
	// region, with the others as fallbacks, nearest first.
	FrontDoor string
	// NoReadThrough names regions that answer MANIFEST_UNKNOWN naming
	// where an image is instead of fetching it on demand.
	NoReadThrough map[string]bool
	// Webhooks tunes webhook delivery in every region.
	Webhooks webhook.Options
	// TLS serves every region and the front door over HTTPS with a
	// certificate from a local CA made under DataDir/tls (CA: TLSFiles).
	TLS bool
	// Auth turns auth on in every region; the user admin's password is
	// kept in AdminPasswordFile(DataDir).
	Auth bool
	// GCInterval, GCGrace and RetentionInterval are region.Config's for
	// every region.
	GCInterval, GCGrace, RetentionInterval time.Duration
	// Encrypt encrypts every region's content store at rest, each with a
	// key file of its own made under DataDir/keys (KeyFile).
	Encrypt bool
	// Encryption, when set, is each region's encryption at rest instead
	// (a KMS plugin's, say; the zero Config leaves a region unencrypted).
	Encryption func(region string) encryption.Config
	// Stores, when set, says where each region keeps its blobs and
	// metadata (an S3 bucket and a PostgreSQL database, say); nil: the
	// filesystem and SQLite under DataDir/<name>.
	Stores func(region string) (region.ContentConfig, region.MetadataConfig)
}

// KeyFile is where `georeg up --encrypt` keeps region's key file: apart
// from the region's own data directory.
func KeyFile(dataDir, region string) string { return filepath.Join(dataDir, "keys", region+".json") }

// DefaultRegions are the three regions `georeg up` starts.
func DefaultRegions() []RegionSpec {
	return []RegionSpec{
		{Name: "eastus", Listen: "127.0.0.1:5001"},
		{Name: "westeurope", Listen: "127.0.0.1:5002"},
		{Name: "southeastasia", Listen: "127.0.0.1:5003"},
	}
}

// Region is a running region.
type Region struct {
	Name string
	URL  string // http://host:port of its main listener
	Node *node.Node
	ls   []net.Listener
}

// Registry is a running registry.
type Registry struct {
	Regions []*Region
	ByName  map[string]*Region
	// FrontDoor is the front door's URL, when it runs.
	FrontDoor string
	door      *route.Router
	done      chan error
	proxies   map[[2]string]*link.Proxy // from, to
	// TLS is the local CA and certificate, when Config.TLS is set.
	TLS tlsconf.Files
	// Secret is the registry's replication secret (peers' credentials
	// derive from it).
	Secret string
}

// Start binds every listener, opens every region and serves them until ctx
// ends. Wait returns when all have stopped.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Registry, error) {
	if cfg.Secret == "" {
		secret, err := LoadSecret(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		cfg.Secret = secret
	}
	reg := &Registry{ByName: map[string]*Region{}, done: make(chan error, 1), proxies: map[[2]string]*link.Proxy{}, Secret: cfg.Secret}
	scheme := "http://"
	if cfg.TLS {
		files, err := tlsconf.LocalCA(filepath.Join(cfg.DataDir, "tls"))
		if err != nil {
			return nil, fmt.Errorf("make the local CA: %w", err)
		}
		reg.TLS, scheme = files, "https://"
	}
	if cfg.Auth {
		if _, err := LoadAdminPassword(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	// The simulated links outlive the regions: they close only once every
	// region has stopped, so no follower sees its link vanish while its
	// own stop is still on the way (it would log a refused connection as
	// a fault at every Ctrl-C).
	linkCtx, stopLinks := context.WithCancel(context.WithoutCancel(ctx))
	closeAll := func() {
		stopLinks()
		for _, r := range reg.Regions {
			for _, l := range r.ls {
				l.Close()
			}
			if r.Node != nil {
				r.Node.Region.Close()
			}
		}
	}
	for _, spec := range cfg.Regions {
		r := &Region{Name: spec.Name}
		for _, addr := range append([]string{spec.Listen}, spec.Extra...) {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("region %s: listen on %s (is another georeg running?): %w", spec.Name, addr, err)
			}
			r.ls = append(r.ls, l)
		}
		r.URL = scheme + r.ls[0].Addr().String()
		reg.Regions = append(reg.Regions, r)
		reg.ByName[r.Name] = r
	}
	for _, r := range reg.Regions {
		c := config.Default()
		c.Region = region.Config{Name: r.Name, DataDir: filepath.Join(cfg.DataDir, r.Name), GCInterval: cfg.GCInterval, GCGrace: cfg.GCGrace, RetentionInterval: cfg.RetentionInterval}
		if cfg.Stores != nil {
			c.Region.Content, c.Region.Metadata = cfg.Stores(r.Name)
		}
		if cfg.Encrypt {
			if err := encryption.CreateLocalKeys(KeyFile(cfg.DataDir, r.Name)); err != nil {
				return nil, fmt.Errorf("region %s: key file: %w", r.Name, err)
			}
			c.Region.Encryption = encryption.Config{Provider: "local", KeyFile: KeyFile(cfg.DataDir, r.Name)}
		}
		if cfg.Encryption != nil {
			c.Region.Encryption = cfg.Encryption(r.Name)
		}
		c.HTTP.Listen = r.ls[0].Addr().String()
		c.Replication.Secret = cfg.Secret
		c.Replication.Endpoint = r.URL
		c.Replication.NoReadThrough = cfg.NoReadThrough[r.Name]
		c.Replication.AntiEntropyInterval = cfg.AntiEntropyInterval
		c.Replication.FeedHorizon, c.Replication.CompactInterval = cfg.FeedHorizon, cfg.CompactInterval
		c.Replication.WedgedAfter = cfg.WedgedAfter
		c.Replication.IdleTimeout, c.Replication.ParkAfter = cfg.IdleTimeout, cfg.ParkAfter
		c.Webhooks = cfg.Webhooks
		// Everything of a local registry is on loopback: its imports,
		// webhooks and replicas too (internal/outbound).
		c.Outbound.Allow = []string{"127.0.0.0/8", "::1"}
		if cfg.TLS {
			c.HTTP.TLSCert, c.HTTP.TLSKey, c.Replication.CAFile = reg.TLS.Cert, reg.TLS.Key, reg.TLS.CA
		}
		if cfg.Auth {
			// Without TLS (test rigs): regions talk plain HTTP on
			// loopback. `georeg up --auth` always serves TLS.
			c.Replication.InsecurePeers = !cfg.TLS
			c.Auth.Enabled, c.Auth.AdminPasswordFile = true, AdminPasswordFile(cfg.DataDir)
			// The front door connects from 127.0.0.1: network rules judge
			// the client address it forwards.
			c.Auth.TrustedProxies = []string{"127.0.0.1/32"}
		}
		for _, p := range byDistance(cfg, r, reg.Regions) {
			endpoint := p.URL
			if shape, ok := distance(cfg, r.Name, p.Name); ok {
				proxy, err := link.Start(linkCtx, strings.TrimPrefix(strings.TrimPrefix(p.URL, "http://"), "https://"), shape)
				if err != nil {
					closeAll()
					return nil, err
				}
				reg.proxies[[2]string{r.Name, p.Name}] = proxy
				endpoint = scheme + proxy.Addr()
			}
			if cfg.Link != nil {
				var err error
				if endpoint, err = cfg.Link(r.Name, p.Name, p.URL); err != nil {
					closeAll()
					return nil, fmt.Errorf("link %s -> %s: %w", r.Name, p.Name, err)
				}
			}
			c.Replication.Peers = append(c.Replication.Peers, replicate.Peer{Name: p.Name, Endpoint: endpoint, PublicEndpoint: p.URL})
		}
		if err := c.Validate(); err != nil {
			closeAll()
			return nil, fmt.Errorf("region %s: %w", r.Name, err)
		}
		n, err := node.Open(ctx, c, log)
		if err != nil {
			closeAll()
			return nil, err
		}
		r.Node = n
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range reg.Regions {
		g.Go(func() error { return r.Node.Serve(gctx, r.ls...) })
	}
	if cfg.FrontDoor != "" {
		if err := reg.startFrontDoor(gctx, g, cfg, log); err != nil {
			stopLinks()
			return nil, err
		}
	}
	go func() {
		err := g.Wait()
		stopLinks()
		reg.done <- err
	}()
	return reg, nil
}

// byDistance returns the regions other than r, nearest first when
// distances are simulated (peers are listed nearest first).
func byDistance(cfg Config, r *Region, all []*Region) []*Region {
	var out []*Region
	for _, p := range all {
		if p != r {
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, _ := distance(cfg, r.Name, out[i].Name)
		b, _ := distance(cfg, r.Name, out[j].Name)
		return a.Latency < b.Latency
	})
	return out
}

// startFrontDoor runs the front door before the regions.
func (reg *Registry) startFrontDoor(ctx context.Context, g *errgroup.Group, cfg Config, log *slog.Logger) error {
	rc := route.Config{Fallback: map[string][]string{}, ProbeKey: peerauth.ProbeKey(cfg.Secret), CAFile: reg.TLS.CA}
	for i, r := range reg.Regions {
		rc.Regions = append(rc.Regions, route.Region{Name: r.Name, Endpoint: r.URL})
		rc.Locations = append(rc.Locations, route.Location{CIDR: fmt.Sprintf("127.0.0.%d/32", i+1), Region: r.Name})
		for _, p := range byDistance(cfg, r, reg.Regions) {
			rc.Fallback[r.Name] = append(rc.Fallback[r.Name], p.Name)
		}
	}
	router, err := route.New(rc, log.With("component", "route"))
	if err != nil {
		return err
	}
	reg.door = router
	l, err := net.Listen("tcp", cfg.FrontDoor)
	if err != nil {
		return fmt.Errorf("front door: listen on %s (is another georeg running?): %w", cfg.FrontDoor, err)
	}
	reg.FrontDoor = "http://" + l.Addr().String()
	if cfg.TLS {
		reg.FrontDoor = "https://" + l.Addr().String()
	}
	srv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	g.Go(func() error { return router.Run(ctx) })
	g.Go(func() error {
		serve := func() error { return srv.Serve(l) }
		if cfg.TLS {
			serve = func() error { return srv.ServeTLS(l, reg.TLS.Cert, reg.TLS.Key) }
		}
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return nil
}

// AdminPasswordFile is where `georeg up --auth` keeps the password of the
// user admin.
func AdminPasswordFile(dataDir string) string { return filepath.Join(dataDir, "admin-password") }

// LoadAdminPassword reads the admin password, creating a random one (mode
// 0600) the first time.
func LoadAdminPassword(dataDir string) (string, error) {
	path := AdminPasswordFile(dataDir)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", err
	}
	password := auth.NewPassword()
	if err := os.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write the admin password: %w", err)
	}
	return password, nil
}

// SecretFile is where a registry's replication secret is kept, so its
// regions (and one added later) agree on it across restarts.
func SecretFile(dataDir string) string { return filepath.Join(dataDir, "replication-secret") }

// LoadSecret reads the registry's replication secret, creating a random
// one (mode 0600) the first time.
func LoadSecret(dataDir string) (string, error) {
	path := SecretFile(dataDir)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	secret := hex.EncodeToString(b[:])
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write the replication secret: %w", err)
	}
	return secret, nil
}

func distance(cfg Config, from, to string) (link.Shape, bool) {
	if cfg.Distance == nil {
		return link.Shape{}, false
	}
	return cfg.Distance(from, to)
}

// Link returns the link region from reaches region to through (nil when
// they talk directly: no Distance for them).
func (r *Registry) Link(from, to string) *link.Proxy { return r.proxies[[2]string{from, to}] }

// Cut puts fault f on every link to and from region name (Healthy heals
// them): a partition of one region from all others, say.
func (r *Registry) Cut(name string, f link.Fault) {
	for pair, p := range r.proxies {
		if pair[0] == name || pair[1] == name {
			p.Set(f)
		}
	}
}

// Wait blocks until every region has stopped (after ctx of Start ended)
// and returns the first error.
func (r *Registry) Wait() error {
	err := <-r.done
	for _, p := range r.proxies {
		p.Wait()
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// AwaitReady calls ready once for each region as it turns Ready (its
// replication state, as `/_georeg/v1/status` reports it) and, when a
// front door runs, the door has probed it Ready: from then on the
// region's clients are sent to it (unless its routing is off), no longer
// to another region while it catches up. It checks every 100 ms and
// returns when every region has been reported or ctx ends.
func (r *Registry) AwaitReady(ctx context.Context, ready func(name string)) {
	reported := map[string]bool{}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for len(reported) < len(r.Regions) {
		for _, reg := range r.Regions {
			if reported[reg.Name] {
				continue
			}
			repl := reg.Node.Replicator()
			if repl == nil {
				reported[reg.Name] = true
				ready(reg.Name)
				continue
			}
			if st, err := repl.Status(ctx); err == nil && st.State == replicate.StateReady && (r.door == nil || r.door.SeesReady(reg.Name)) {
				reported[reg.Name] = true
				ready(reg.Name)
			}
		}
		if len(reported) == len(r.Regions) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
