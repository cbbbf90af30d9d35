package route

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/bounded"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/metrics"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/tlsconf"
)

// Router is the front door: an http.Handler, and a prober (Run).
type Router struct {
	cfg       Config
	log       *slog.Logger
	probe     *http.Client
	probeKeys peerauth.Keys // the door's only key (Config.ProbeKey)
	locations []location    // longest prefix first
	regions   map[string]*regionState
	order     []string
	metrics   *metrics.Door
	// routable is what the last probe round found of each region, and
	// ever whether any had found it routable (Run's goroutine alone reads
	// and writes them).
	routable, ever map[string]bool
}

// Metrics returns the door's metrics (served on the door's own /metrics).
func (r *Router) Metrics() *metrics.Door { return r.metrics }

type location struct {
	prefix netip.Prefix
	region string
}

// New returns a front door for cfg.
func New(cfg Config, log *slog.Logger) (*Router, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tlsConfig, err := tlsconf.Client(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("caFile: %w", err)
	}
	r := &Router{cfg: cfg, log: log, regions: map[string]*regionState{}, metrics: metrics.NewDoor(), routable: map[string]bool{}, ever: map[string]bool{},
		probe: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}}
	if cfg.ProbeKey != "" {
		r.probeKeys, _ = peerauth.ProbeOnly(cfg.ProbeKey) // checked by Validate
	}
	transport := &bounded.Transport{
		Base:   &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, TLSClientConfig: tlsConfig},
		Limits: cfg.limits,
	}
	for _, reg := range cfg.Regions {
		r.regions[reg.Name] = r.newRegionState(reg, transport)
		r.order = append(r.order, reg.Name)
	}
	for _, l := range cfg.Locations {
		p, _ := netip.ParsePrefix(l.CIDR)
		r.locations = append(r.locations, location{p.Masked(), l.Region})
	}
	sort.SliceStable(r.locations, func(i, j int) bool { return r.locations[i].prefix.Bits() > r.locations[j].prefix.Bits() })
	return r, nil
}

// authorize adds the door's probe token to a probe (regions with auth on
// need it for their status).
func (r *Router) authorize(req *http.Request) {
	if r.cfg.ProbeKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.probeKeys.ProbeToken(time.Now()))
	}
}

// Run probes every region every ProbeInterval until ctx ends.
func (r *Router) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.ProbeInterval)
	defer t.Stop()
	for {
		r.probeAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// probeAll probes every node of every region at once and reads the
// routing flags.
func (r *Router) probeAll(ctx context.Context) {
	var g errgroup.Group
	for _, name := range r.order {
		st := r.regions[name]
		for _, n := range st.nodes {
			g.Go(func() error {
				p, err := r.probeNode(ctx, n.url)
				n.mu.Lock()
				defer n.mu.Unlock()
				switch n.record(p, err, r.cfg.FailAfter, r.cfg.RecoverAfter) {
				case drained:
					r.log.WarnContext(ctx, "node drained", "region", st.Name, "node", n.url, "error", err)
				case inService:
					r.log.InfoContext(ctx, "node in service", "region", st.Name, "node", n.url)
				}
				return nil
			})
		}
	}
	_ = g.Wait()
	r.readFlags(ctx)
	for _, name := range r.order {
		st := r.regions[name]
		now := st.usable(false)
		r.metrics.Routable(name, now)
		was, ever := r.routable[name], r.ever[name]
		r.routable[name], r.ever[name] = now, ever || now
		switch routingChange(was, ever, now) {
		case routableFirst:
			r.log.InfoContext(ctx, "region routable", "region", name)
		case routableAgain:
			r.log.InfoContext(ctx, "region routable again: its clients come back to it", "region", name)
		case routableLost:
			why, off := st.notRoutableWhy()
			level := slog.LevelWarn
			if off {
				level = slog.LevelInfo // an operator's choice, not a fault
			}
			r.log.Log(ctx, level, "region not routable: its clients go to the next routable region until it is", "region", name, "why", why)
		}
	}
}

// What a probe round changed in whether a region is routable.
const (
	routableSame = iota
	routableFirst
	routableAgain
	routableLost
)

// routingChange tells what a round that found a region routable (now)
// changed, when the round before found was and ever tells whether any
// round had. A region that has never been routable (starting, catching
// up) is no news; one that stops being routable moves its clients away.
func routingChange(was, ever, now bool) int {
	switch {
	case now && !ever:
		return routableFirst
	case now && !was:
		return routableAgain
	case !now && was:
		return routableLost
	}
	return routableSame
}

// probe is what one probe of a node found.
type probe struct {
	ready    bool // its replication state is Ready
	writable bool // it takes pushes (not out of storage space)
}

// probeNode checks a node deeply: /readyz (it can serve: its stores
// answer) and its replication state, including whether it takes pushes.
func (r *Router) probeNode(ctx context.Context, base string) (probe, error) {
	get := func(path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+path, nil)
		if err != nil {
			return nil, err
		}
		r.authorize(req)
		resp, err := r.probe.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return nil, fmt.Errorf("%s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return resp, nil
	}
	resp, err := get("/readyz")
	if err != nil {
		return probe{}, err
	}
	resp.Body.Close()
	resp, err = get("/_georeg/v1/status")
	if err != nil {
		return probe{}, err
	}
	defer resp.Body.Close()
	// Replication stuck on a peer (status.wedged) is not counted: a
	// region's health is its own, never its peers' (invariant 10); what it
	// lacks, it reads through.
	var status struct {
		State    string
		Writable *bool // absent from a node that predates it: writable
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&status); err != nil {
		return probe{}, fmt.Errorf("status: %w", err)
	}
	return probe{ready: status.State == "Ready", writable: status.Writable == nil || *status.Writable}, nil
}

// readFlags reads which regions have routing turned off. The setting
// replicates, so any region knows it, but a region may not know the
// latest change yet: every answering region is asked at once and, per
// region, the view with the latest version wins (a region that has not
// applied a change cannot turn it back).
func (r *Router) readFlags(ctx context.Context) {
	var (
		mu    sync.Mutex
		views [][]routingFlag
		g     errgroup.Group
	)
	for _, name := range r.order {
		node := r.regions[name].answeringNode()
		if node == nil {
			continue
		}
		g.Go(func() error {
			list, err := r.readFlagsOf(ctx, node.url)
			if err == nil {
				mu.Lock()
				views = append(views, list)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	for _, list := range views {
		for _, item := range list {
			other, ok := r.regions[item.Name]
			if !ok {
				continue
			}
			v, err := hlc.ParseVersion(item.RoutingVersion)
			if err != nil {
				v = hlc.Version{} // never set: routing on, until a versioned view says otherwise
			}
			other.mu.Lock()
			if laterFlag(other.enabledVersion, v) {
				if other.enabled != item.RegionEndpointEnabled {
					r.log.InfoContext(ctx, "region routing changed", "region", item.Name, "enabled", item.RegionEndpointEnabled, "version", item.RoutingVersion)
				}
				other.enabled, other.enabledVersion = item.RegionEndpointEnabled, v
			}
			other.mu.Unlock()
		}
	}
}

// routingFlag is one region's routing flag as one region sees it.
type routingFlag struct {
	Name                  string
	RegionEndpointEnabled bool
	RoutingVersion        string
}

// laterFlag says whether a view of a routing flag written at version v
// replaces the one the door holds, written at cur: only a later write does
// (a view with no version — never set — replaces nothing but another).
func laterFlag(cur, v hlc.Version) bool {
	if v.IsZero() {
		return cur.IsZero()
	}
	return cur.Less(v)
}

func (r *Router) readFlagsOf(ctx context.Context, base string) ([]routingFlag, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_georeg/v1/replications", nil)
	if err != nil {
		return nil, err
	}
	r.authorize(req)
	resp, err := r.probe.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("replications: %s", resp.Status)
	}
	var list []routingFlag
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&list); err != nil {
		return nil, err
	}
	return list, nil
}

// address is the IP the DNS mode answers for the region.
func (st *regionState) address() netip.Addr {
	if a, err := netip.ParseAddr(st.Address); err == nil {
		return a
	}
	if u, err := url.Parse(st.Endpoint); err == nil {
		if a, err := netip.ParseAddr(u.Hostname()); err == nil {
			return a
		}
	}
	return netip.Addr{}
}

// home returns the region a client address belongs to.
func (r *Router) home(addr netip.Addr) string {
	addr = addr.Unmap()
	for _, l := range r.locations {
		if l.prefix.Contains(addr) {
			return l.region
		}
	}
	return r.order[0]
}

// candidates lists the regions to try for a client of home, in order.
func (r *Router) candidates(home string) []string {
	out := []string{home}
	seen := map[string]bool{home: true}
	list := r.cfg.Fallback[home]
	if len(list) == 0 {
		list = r.order
	}
	for _, name := range append(list, r.order...) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

// Choose returns the region for a request from client addr to path, and
// whether it was pinned (an upload session or a pinned endpoint). A
// request that stores content (write) goes to a region that takes pushes
// when one is usable: a region out of storage space keeps serving pulls.
func (r *Router) Choose(addr netip.Addr, path string, write bool) (string, bool) {
	if name, ok := r.sessionRegion(path); ok {
		return name, true
	}
	cands := r.candidates(r.home(addr))
	if write {
		for _, name := range cands {
			if r.regions[name].usable(true) {
				return name, false
			}
		}
	}
	for _, name := range cands {
		if r.regions[name].usable(false) {
			return name, false
		}
	}
	for _, name := range r.order { // nothing is Ready and enabled: any healthy one
		if r.regions[name].isHealthy() {
			return name, false
		}
	}
	return "", false
}

// stores reports whether req stores content in a region: an upload or a
// manifest push. Such a request is sent to a region out of storage space
// only when no other can take it (it then answers STORAGE_FULL).
func stores(req *http.Request) bool {
	if !strings.HasPrefix(req.URL.Path, "/v2/") {
		return false
	}
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return true
	}
	return false
}

// sessionRegion finds the region an upload session path names
// (.../blobs/uploads/<region>.<hex>).
func (r *Router) sessionRegion(path string) (string, bool) {
	i := strings.LastIndex(path, "/blobs/uploads/")
	if i < 0 {
		return "", false
	}
	id := path[i+len("/blobs/uploads/"):]
	name, _, ok := strings.Cut(id, ".")
	if !ok {
		return "", false
	}
	_, known := r.regions[name]
	return name, known
}

// ServeHTTP routes one request.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/metrics" {
		r.metrics.Handler().ServeHTTP(w, req) // the door's own; scrape regions directly
		return
	}
	var b *body
	if req.Body != nil && req.Body != http.NoBody {
		b = &body{rc: req.Body}
		req.Body = b
	}
	// Pinned regional endpoints: /region/<name>/... or host <name>.<...>.
	if rest, ok := strings.CutPrefix(req.URL.Path, "/region/"); ok {
		name, path, _ := strings.Cut(rest, "/")
		if st, known := r.regions[name]; known {
			if refused := st.pinnedRefusal(); refused != nil {
				ocierr.Write(w, req, refused)
				return
			}
			req.URL.Path, req.URL.RawPath = "/"+path, ""
			r.metrics.Routed(name, "pinned")
			r.forward(w, req, st, b, true)
			return
		}
	}
	if name, _, ok := strings.Cut(req.Host, "."); ok {
		if st, known := r.regions[name]; known {
			if refused := st.pinnedRefusal(); refused != nil {
				ocierr.Write(w, req, refused)
				return
			}
			r.metrics.Routed(name, "pinned")
			r.forward(w, req, st, b, true)
			return
		}
	}
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	addr, perr := netip.ParseAddr(host)
	if err != nil || perr != nil {
		addr = netip.Addr{}
	}
	write := stores(req)
	name, pinned := r.Choose(addr, req.URL.Path, write)
	if name == "" {
		ocierr.Write(w, req, ocierr.Unknown.Withf("no region can serve now: every region failed its health checks; retry shortly"))
		return
	}
	home := r.home(addr)
	switch {
	case pinned:
		r.metrics.Routed(name, "session")
	case name == home:
		r.metrics.Routed(name, "home")
	default:
		r.metrics.Routed(name, "fallback")
		r.metrics.Failover(home, name)
	}
	if pinned {
		r.forward(w, req, r.regions[name], b, true) // a session lives in its region
		return
	}
	// A request no node of its region took (it died since the last probe)
	// moves at once to the next candidate region (forward's rules).
	var next []string
	for _, c := range append([]string{name}, r.candidates(home)...) {
		if !slices.Contains(next, c) && (c == name || r.regions[c].isHealthy()) && (!write || r.regions[c].usable(true) || c == name) {
			next = append(next, c)
		}
	}
	for i, c := range next {
		if i > 0 {
			r.metrics.Routed(c, "retry")
			r.metrics.Failover(next[i-1], c)
		}
		if r.forward(w, req, r.regions[c], b, i == len(next)-1) {
			return
		}
	}
}

// answerUnreachable answers a request no node of region took.
func (r *Router) answerUnreachable(w http.ResponseWriter, req *http.Request, region string, err error) {
	ocierr.Write(w, req, ocierr.Unknown.Withf("region %s did not answer (%v); retry: the front door routes around a failed node or region within seconds", region, err))
}
