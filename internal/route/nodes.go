package route

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/ocierr"
)

// regionState is what the front door knows of a region: its nodes and
// whether clients may be sent to it.
type regionState struct {
	Region
	nodes []*nodeState
	next  atomic.Uint64 // round-robin start among healthy nodes

	mu      sync.Mutex
	enabled bool // routing to it is on (replication setting regionEndpointEnabled)
	// enabledVersion is the version of the setting enabled was read from
	// (zero: never set).
	enabledVersion hlc.Version
}

// nodeState is what the front door knows of one node of a region. Health
// fields are guarded by mu.
type nodeState struct {
	url   string
	proxy *httputil.ReverseProxy

	mu      sync.Mutex
	healthy bool // after RecoverAfter good probes in a row; false after FailAfter bad
	good    int  // consecutive good probes
	bad     int  // consecutive bad probes
	ready   bool // its replication state is Ready
	// writable: it takes pushes (not out of storage space; probed)
	writable bool
	lastErr  string
	// drainedOnce: the node has been drained at least once, so it must
	// earn RecoverAfter good probes to come back.
	drainedOnce bool
}

// newRegionState makes the state of reg, one reverse proxy per node.
func (r *Router) newRegionState(reg Region, transport http.RoundTripper) *regionState {
	st := &regionState{Region: reg, enabled: true}
	urls := reg.Nodes
	if len(urls) == 0 {
		urls = []string{reg.Endpoint}
	}
	for _, raw := range urls {
		u, _ := url.Parse(strings.TrimSuffix(raw, "/"))
		n := &nodeState{url: u.String()}
		n.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				pr.SetXForwarded()
				pr.Out.Host = pr.In.Host // regions answer relative Locations; keep the client's name
			},
			Transport:  transport,
			BufferPool: proxyBuffers,
			ModifyResponse: func(resp *http.Response) error {
				resp.Header.Set("X-Georeg-Region", reg.Name)
				return nil
			},
			// Nothing reached the client yet: forward decides whether the
			// next node takes the request, or answers the error.
			ErrorHandler: func(_ http.ResponseWriter, req *http.Request, err error) {
				if a, ok := req.Context().Value(attemptKey{}).(*attempt); ok {
					a.err = err
				}
				r.log.WarnContext(req.Context(), "node did not answer", "region", reg.Name, "node", u.String(), "error", err)
			},
		}
		st.nodes = append(st.nodes, n)
	}
	return st
}

// proxyBuffers are the buffers the door copies response bodies
// through. Without a pool ReverseProxy allocates 32 KiB per response,
// so at tens of thousands of manifest GETs a second the door made
// gigabytes of garbage a minute.
var proxyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

func (n *nodeState) isHealthy() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.healthy
}

// Nodes reports how many of region's nodes are healthy, of how many
// (0, 0 for a region the door does not know).
func (r *Router) Nodes(region string) (healthy, total int) {
	st, ok := r.regions[region]
	if !ok {
		return 0, 0
	}
	for _, n := range st.nodes {
		if n.isHealthy() {
			healthy++
		}
	}
	return healthy, len(st.nodes)
}

// SeesReady reports whether the door's probes found some node of region
// healthy and Ready, so it sends the region's clients there unless its
// routing is off (false for a region the door does not know).
func (r *Router) SeesReady(region string) bool {
	st, ok := r.regions[region]
	return ok && st.readyNode(false)
}

// healthyNode returns the region's first healthy node, or nil.
func (st *regionState) healthyNode() *nodeState {
	for _, n := range st.nodes {
		if n.isHealthy() {
			return n
		}
	}
	return nil
}

// answeringNode returns the region's first healthy node whose last probe
// succeeded, or nil: one that has begun to fail (hung, and not drained
// yet) is not asked for more.
func (st *regionState) answeringNode() *nodeState {
	for _, n := range st.nodes {
		n.mu.Lock()
		ok := n.healthy && n.bad == 0
		n.mu.Unlock()
		if ok {
			return n
		}
	}
	return nil
}

// A probe's effect on a node's health.
const (
	unchanged = iota
	drained   // healthy before, drained now
	inService // drained (or new) before, in service now
)

// record counts a probe's outcome (p, or err when it failed) against the
// node, whose mu the caller holds: failAfter failures in a row drain it,
// recoverAfter answers in a row put it back — except that a node never
// drained counts its first answer at once, so a fresh front door routes
// without waiting. It returns what changed.
func (n *nodeState) record(p probe, err error, failAfter, recoverAfter int) int {
	if err != nil {
		n.good, n.bad, n.lastErr = 0, n.bad+1, err.Error()
		if n.bad < failAfter {
			return unchanged
		}
		n.drainedOnce = true
		if !n.healthy {
			return unchanged
		}
		n.healthy = false
		return drained
	}
	n.bad, n.good, n.ready, n.writable, n.lastErr = 0, n.good+1, p.ready, p.writable, ""
	if n.healthy || (n.good < recoverAfter && n.drainedOnce) {
		return unchanged
	}
	n.healthy = true
	return inService
}

// isHealthy reports whether some node of the region is healthy.
func (st *regionState) isHealthy() bool { return st.healthyNode() != nil }

// usable reports whether clients may be sent to the region: routing is on
// and a node is healthy and Ready, and, for a request that stores content
// (write), takes pushes.
func (st *regionState) usable(write bool) bool {
	st.mu.Lock()
	enabled := st.enabled
	st.mu.Unlock()
	return enabled && st.readyNode(write)
}

// readyNode reports whether a node of the region is healthy and Ready
// and, for a request that stores content (write), takes pushes.
func (st *regionState) readyNode(write bool) bool {
	for _, n := range st.nodes {
		n.mu.Lock()
		ok := n.healthy && n.ready && (!write || n.writable)
		n.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// notRoutableWhy says why the region takes no clients: its routing is
// off (off true: an operator's choice), no node of it is healthy, or none
// of its healthy nodes is Ready.
func (st *regionState) notRoutableWhy() (why string, off bool) {
	st.mu.Lock()
	enabled := st.enabled
	st.mu.Unlock()
	switch {
	case !enabled:
		return "its routing is off", true
	case st.healthyNode() == nil:
		return "no node of it passes its health checks", false
	}
	return "it is not Ready (catching up)", false
}

// pinnedRefusal says why a request pinned to the region (its own host
// name, /region/<name>/) is not sent to it: its routing is turned off, or
// no node of it is healthy (drained). nil sends it.
func (st *regionState) pinnedRefusal() *ocierr.Error {
	st.mu.Lock()
	enabled := st.enabled
	st.mu.Unlock()
	switch {
	case !enabled:
		return ocierr.Unavailable.Withf("region %s has its routing turned off (georeg replication update %s --region-endpoint-enabled true turns it on); use the registry's name to reach another region", st.Name, st.Name)
	case !st.isHealthy():
		e := ocierr.Unavailable.Withf("region %s failed its health checks and is drained; use the registry's name to reach another region, or retry later", st.Name)
		e.RetryAfter = 5 * time.Second
		return e
	}
	return nil
}

// rotation returns the region's healthy nodes, starting at the next in
// turn; when none is healthy, all of them (a last try beats no answer).
func (st *regionState) rotation() []*nodeState {
	start := int(st.next.Add(1))
	var healthy []*nodeState
	for i := range st.nodes {
		n := st.nodes[(start+i)%len(st.nodes)]
		if n.isHealthy() {
			healthy = append(healthy, n)
		}
	}
	if len(healthy) == 0 {
		for i := range st.nodes {
			healthy = append(healthy, st.nodes[(start+i)%len(st.nodes)])
		}
	}
	return healthy
}

// attempt is one node's try at a request: the error it failed with, if
// it failed before anything reached the client.
type attempt struct{ err error }

type attemptKey struct{}

// body counts what the nodes read of a request's body and keeps the body
// open across attempts (the server closes it), so a node that refused the
// connection before reading a byte leaves it whole for the next.
type body struct {
	rc io.ReadCloser
	n  atomic.Int64
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *body) Close() error { return nil }

// retryable reports whether a request whose attempt failed with err may
// go to another node: none of its body was read, and it is a read (which
// a node may have seen without harm) or the node never took the
// connection (it cannot have acted on it).
func retryable(req *http.Request, b *body, err error) bool {
	if b != nil && b.n.Load() > 0 {
		return false
	}
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// forward sends req to the region's nodes in turn until one takes it. It
// reports false when none did and the request may still go elsewhere
// (nothing was written to w); otherwise the request is answered, by a
// node or with the error.
func (r *Router) forward(w http.ResponseWriter, req *http.Request, st *regionState, b *body, last bool) bool {
	var err error
	for _, n := range st.rotation() {
		a := &attempt{}
		n.proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), attemptKey{}, a)))
		if a.err == nil {
			return true
		}
		if err = a.err; !retryable(req, b, err) {
			last = true
			break
		}
	}
	if !last {
		return false
	}
	if err == nil {
		err = errors.New("no node")
	}
	r.answerUnreachable(w, req, st.Name, err)
	return true
}
