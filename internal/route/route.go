// Package route is the front door (`georeg route`): one registry name for
// every region. It sends each request to the closest healthy, Ready,
// routing-enabled region for the client's location, taken from the source
// address (a CIDR -> region table, as split-horizon DNS and geo routing
// do) with a fallback order per region by distance.
//
// Health comes from deep probes: every ProbeInterval each region's /readyz
// (its stores answer) and /_georeg/v1/status (replication state, and
// whether it takes pushes). Both answer from the region's own state, so a
// hung or stuck peer never makes a healthy region fail its probe; a
// region out of storage space stays in rotation for pulls, and requests
// that store content (POST, PUT, PATCH under /v2/) go to a region that
// takes pushes when one is usable. A region is
// drained after FailAfter failed probes in a row and taken back after
// RecoverAfter good ones, so a flapping region does not flap the routing.
// With the defaults (1 s, 2, 3) a failed region is drained within 3 s.
//
// An upload session stays in the region that started it: its id names
// the region (`<region>.<hex>`), and a request on it goes there whatever
// the client's location (to any of its nodes: a session lives in the
// region's shared stores).
//
// A region of several nodes (Region.Nodes) is probed node by node; it is
// healthy while one node is, and requests go to its healthy nodes in
// turn. A request a node does not take (its connection refused: it died
// since the last probe), and a read that fails before any byte reached
// the client, moves to the next node, then to the next region; a request
// whose body the dead node had begun to read fails, and the client
// retries it. No request waits on a region without a bound (ReadTimeout,
// WriteTimeout, IdleTimeout): a read a hung region does not answer in
// time goes to the next region like one it refused.
//
// Pinned regional endpoints: a request whose Host starts with a region's
// name and a dot (westeurope.registry.example.com, given DNS for it) goes
// to that region whatever the client's location; registry clients pin a
// region this way, or by using the region's own endpoint. For curl and
// debugging, /region/<name>/<path> goes to <path> in that region
// (registry clients cannot use it: they always request /v2/<repository>).
// A region whose routing is turned off, or whose every node is drained,
// is not reached this way either: the door answers 503 UNAVAILABLE naming
// why (an upload session still goes to the region that holds it).
package route

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"time"

	"github.com/georeg/georeg/internal/bounded"
	"github.com/georeg/georeg/internal/peerauth"
)

// Region is one region the front door routes to.
type Region struct {
	Name     string `yaml:"name"`
	Endpoint string `yaml:"endpoint"` // base URL, e.g. http://127.0.0.1:5001
	// Nodes are the base URLs of the region's nodes, when it runs several
	// (zone redundancy) and the door balances them itself: it probes each,
	// sends requests to the healthy ones in turn, and a request a node did
	// not take (it died since the last probe) to the next. Empty: the
	// region is Endpoint alone (one node, or a load balancer of its own).
	Nodes []string `yaml:"nodes,omitempty"`
	// Address is the IP the DNS mode answers for this region (default:
	// the endpoint's host when it is an IP).
	Address string `yaml:"address,omitempty"`
}

// Location maps client source addresses to their home region.
type Location struct {
	CIDR   string `yaml:"cidr"`
	Region string `yaml:"region"`
}

// Config is the front door's configuration.
type Config struct {
	Regions   []Region   `yaml:"regions"`
	Locations []Location `yaml:"locations"`
	// Fallback lists, per region, the regions to try when it cannot serve,
	// nearest first. A region without a list falls back to the others in
	// Regions order.
	Fallback      map[string][]string `yaml:"fallback"`
	ProbeInterval time.Duration       `yaml:"probeInterval"`
	FailAfter     int                 `yaml:"failAfter"`
	RecoverAfter  int                 `yaml:"recoverAfter"`
	// ProbeKey is the registry's probe key (64 hex digits; `georeg
	// replication probe-key` prints it): with auth on, the door reads the
	// regions' status with tokens it signs. It can do nothing else: the
	// door never holds the replication secret (internal/peerauth).
	ProbeKey string `yaml:"probeKey"`
	// Secret is refused: the door took the replication secret before
	// probeKey existed.
	Secret string `yaml:"secret"`
	// ReadTimeout bounds how long a GET or HEAD waits for a region's
	// response headers; a read cut by it goes to the next node or region
	// (default 10s). WriteTimeout bounds the same for every other request,
	// counted from when its body has been sent (default 60s). IdleTimeout
	// cuts a request body a region stops taking, and a response body from
	// which no byte arrives, after that long (default 30s). Together they
	// keep a hung region (stopped, or its disk hanging) from holding a
	// client beyond them; the probes drain it meanwhile.
	ReadTimeout  time.Duration `yaml:"readTimeout"`
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	IdleTimeout  time.Duration `yaml:"idleTimeout"`
	// CAFile, when set, is a PEM bundle the door trusts for regions served
	// over TLS (besides the system's roots).
	CAFile string `yaml:"caFile"`
}

// limits are the bounds of a request to a region: a read's answer
// within ReadTimeout, any other's within WriteTimeout of its body being
// sent; no gap in either body longer than IdleTimeout.
func (c Config) limits(req *http.Request) bounded.Limits {
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		return bounded.Limits{Header: c.ReadTimeout, Idle: c.IdleTimeout}
	}
	return bounded.Limits{Header: c.WriteTimeout, Idle: c.IdleTimeout}
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.ProbeInterval == 0 {
		c.ProbeInterval = time.Second
	}
	if c.FailAfter == 0 {
		c.FailAfter = 2
	}
	if c.RecoverAfter == 0 {
		c.RecoverAfter = 3
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = time.Minute
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	return c
}

var (
	nameRegexp     = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	endpointRegexp = regexp.MustCompile(`^https?://[^/\s]+/?$`)
)

// Validate reports every problem with its field path.
func (c Config) Validate() error {
	var errs []error
	known := map[string]bool{}
	if c.Secret != "" {
		errs = append(errs, errors.New("secret: the front door no longer takes the replication secret; set probeKey to what `georeg replication probe-key --replication-secret-file F` prints"))
	}
	if c.ProbeKey != "" {
		if _, err := peerauth.ProbeOnly(c.ProbeKey); err != nil {
			errs = append(errs, fmt.Errorf("probeKey: %w", err))
		}
	}
	if len(c.Regions) == 0 {
		errs = append(errs, errors.New("regions: at least one"))
	}
	for i, r := range c.Regions {
		if !nameRegexp.MatchString(r.Name) || known[r.Name] {
			errs = append(errs, fmt.Errorf("regions[%d].name: %q is not a region name or is listed twice", i, r.Name))
		}
		known[r.Name] = true
		if !endpointRegexp.MatchString(r.Endpoint) {
			errs = append(errs, fmt.Errorf("regions[%d].endpoint: %q must be http(s)://host:port", i, r.Endpoint))
		}
		for j, n := range r.Nodes {
			if !endpointRegexp.MatchString(n) {
				errs = append(errs, fmt.Errorf("regions[%d].nodes[%d]: %q must be http(s)://host:port", i, j, n))
			}
		}
		if r.Address != "" {
			if _, err := netip.ParseAddr(r.Address); err != nil {
				errs = append(errs, fmt.Errorf("regions[%d].address: %v", i, err))
			}
		}
	}
	for i, l := range c.Locations {
		if _, err := netip.ParsePrefix(l.CIDR); err != nil {
			errs = append(errs, fmt.Errorf("locations[%d].cidr: %v", i, err))
		}
		if !known[l.Region] {
			errs = append(errs, fmt.Errorf("locations[%d].region: %q is not in regions", i, l.Region))
		}
	}
	for from, list := range c.Fallback {
		if !known[from] {
			errs = append(errs, fmt.Errorf("fallback.%s: not in regions", from))
		}
		for _, to := range list {
			if !known[to] {
				errs = append(errs, fmt.Errorf("fallback.%s: %q is not in regions", from, to))
			}
		}
	}
	if c.ProbeInterval < 0 || c.FailAfter < 0 || c.RecoverAfter < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 {
		errs = append(errs, errors.New("probeInterval, failAfter, recoverAfter, readTimeout, writeTimeout, idleTimeout: must not be negative"))
	}
	return errors.Join(errs...)
}
