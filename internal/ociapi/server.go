package ociapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/cache"
	"github.com/georeg/georeg/internal/metrics"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/webhook"
)

// API serves one region's /v2 endpoints.
type API struct {
	region  *region.Region
	log     *slog.Logger
	opts    Options
	uploads *uploadSlots // uploads in flight (uploadlimit.go)
}

// Options are the API's settings and its link to other regions.
type Options struct {
	// BlobCopy is one of the Copy modes ("" is CopyAuto).
	BlobCopy string
	// MaxUploads and MaxUploadsPerClient bound the uploads in flight on
	// the node, in all and per client (0: DefaultMaxUploads,
	// DefaultMaxUploadsPerClient).
	MaxUploads, MaxUploadsPerClient int
	// Peers finds what this region lacks in other regions; nil in a
	// registry of one region.
	Peers Peers
	// Upstream fetches a manifest a client asks for, that neither this
	// region nor a peer holds, from the upstream registry of the cache
	// rule its repository falls under (internal/cache); nil: none.
	Upstream Upstream
	// ReadThrough fetches a manifest or blob a client asks for from a
	// peer when this region lacks it (on by default in a registry).
	ReadThrough bool
	// IsPeer reports a request from another region: it is answered from
	// this region's own content, never read through, so regions never
	// chase each other.
	IsPeer func(*http.Request) bool
	// IsProbe reports a request from another region or the front door:
	// network rules do not apply to it (it is authenticated, and the door
	// probes from its own address).
	IsProbe func(*http.Request) bool
	// DataURL, when set, is this region's data endpoint: blob GETs from
	// clients answer 307 there (peers still get the bytes directly).
	DataURL string
	// Auth decides who may do what (nil: everyone everything). Peers skip
	// it: they hold a peer credential.
	Auth *auth.Service
	// Metrics, when set, counts every request and is served on /metrics
	// (an admin's or a peer's, with auth on).
	Metrics *metrics.Node
	// BodyIdle cuts a request body from which no byte arrives for that
	// long (0: 30 s).
	BodyIdle time.Duration
	// DataKey, when set (auth on), signs the data endpoint URLs blob GETs
	// redirect to; the data endpoint serves only signed ones (datasign.go).
	DataKey []byte
}

// Upstream is the artifact cache (cache.Puller).
type Upstream interface {
	// Ensure makes a manifest no region holds come from the upstream of
	// the cache rule repo falls under (ok false: none). While the image
	// is not stored whole yet, the Image carries the manifest to serve
	// (a cold pull streams); else it is stored here, or in the region
	// Via names: read it through from there.
	Ensure(ctx context.Context, repo, ref string) (img cache.Image, ok bool, err error)
	// Passing names the region fetching repo's image for a pull here
	// ("" none): a miss in repo asks it first, not every region.
	Passing(repo string) string
	// Revalidate checks cached tag repo:tag, held at have, against the
	// upstream when due: d is the digest to serve, stale that the
	// upstream could not be asked and the cached copy is served.
	Revalidate(ctx context.Context, repo, tag string, have digest.Digest, force bool) (d digest.Digest, stale, ok bool, err error)
	// Mirror maps a mirror request (containerd's ?ns=REGISTRY) for repo
	// of registry ns to this registry's repository.
	Mirror(ctx context.Context, ns, repo string) (string, bool)
	// RuleOf names the cache rule repo falls under, if any.
	RuleOf(ctx context.Context, repo string) (string, bool)
	// EnsureBlob fetches blob d of repo from its rule's upstream and
	// links it here (ok false: repo falls under no rule).
	EnsureBlob(ctx context.Context, repo string, d digest.Digest) (ok bool, err error)
}

// CacheHeader says, on a manifest of a cached repository, that the
// upstream could not be asked whether its tag moved ("stale").
const CacheHeader = "X-Georeg-Cache"

// Peers is what the API asks of other regions. replicate.Replicator
// implements it.
type Peers interface {
	// EnsureManifest makes manifest ref of repo complete here and returns
	// its digest, or MANIFEST_UNKNOWN naming where it exists.
	EnsureManifest(ctx context.Context, repo, ref string) (digest.Digest, error)
	// EnsureManifestFrom is EnsureManifest from region first, which holds
	// it.
	EnsureManifestFrom(ctx context.Context, region, repo, ref string) (digest.Digest, error)
	// Where returns MANIFEST_UNKNOWN naming where ref exists.
	Where(ctx context.Context, repo, ref string) error
	// EnsureBlob makes blob d present in repo here, or BLOB_UNKNOWN.
	EnsureBlob(ctx context.Context, repo string, d digest.Digest) error
	// StatBlob returns the size of blob d of repo in the nearest peer
	// holding it, or BLOB_UNKNOWN.
	StatBlob(ctx context.Context, repo string, d digest.Digest) (int64, error)
	// StreamBlob makes blob d present in repo here while writing its bytes
	// to the writer start returns (see replicate.Replicator.StreamBlob).
	StreamBlob(ctx context.Context, repo string, d digest.Digest, start func(size int64) io.Writer) error
	// EnsureReferences fetches what a manifest being pushed references and
	// this region lacks.
	EnsureReferences(ctx context.Context, repo, contentType string, payload []byte) error
	// Endpoint returns the base URL of the region named, if it is a peer.
	Endpoint(region string) (string, bool)
	// RelayBlob makes blob d (size bytes) of origin's feed present in the
	// content store for a peer that fetches origin's blobs through this
	// region, streaming it to the writer start returns when this call
	// fetches it (see replicate.Replicator.RelayBlob).
	RelayBlob(ctx context.Context, origin, repo string, d digest.Digest, size int64, start func(size int64) io.Writer) (bool, error)
}

// isPeer reports a request from another region.
func (a *API) isPeer(r *http.Request) bool { return a.opts.IsPeer != nil && a.opts.IsPeer(r) }

// networkCheck applies the network rules to r: DENIED for a client address
// they refuse. Regions and the front door (authenticated, probing from
// their own addresses) are not clients.
func (a *API) networkCheck(r *http.Request) error {
	if a.opts.Auth == nil || (a.opts.IsProbe != nil && a.opts.IsProbe(r)) {
		return nil
	}
	if managementPath(r.URL.Path) {
		// Network rules guard the data plane: an operator on the machine
		// can always manage (an admin still has to sign in), so no rule
		// locks the registry's administration out.
		if addr, err := a.opts.Auth.ClientAddr(r); err == nil && addr.IsLoopback() {
			return nil
		}
	}
	return a.opts.Auth.NetworkCheck(r)
}

// managementPath reports a path an operator manages the registry through:
// the management API, the token endpoint the CLI signs in at, the
// dashboard.
func managementPath(p string) bool {
	return strings.HasPrefix(p, "/_georeg/v1/") || p == auth.TokenPath || strings.HasPrefix(p, "/ui/")
}

// askPeers reports whether a miss on r may be looked up in other regions.
func (a *API) askPeers(r *http.Request) bool {
	return a.opts.Peers != nil && (a.opts.IsPeer == nil || !a.opts.IsPeer(r))
}

// Blob copy modes: how a blob GET moves bytes from the file to the socket.
const (
	// CopyAuto uses sendfile for clients on the network and a buffered
	// copy for clients on a loopback address. Measured on the 2-core VM
	// this project runs on, sendfile (and splice) to a loopback socket
	// reach ~2.1 GiB/s where read+write with a 1 MiB buffer reaches ~3.0;
	// over a NIC, sendfile's zero copy saves the CPU a copy costs.
	CopyAuto = "auto"
	// CopySendfile always lets the kernel copy.
	CopySendfile = "sendfile"
	// CopyBuffered always copies through a 1 MiB buffer in user space.
	CopyBuffered = "buffered"
)

// New returns the API for r.
func New(r *region.Region, log *slog.Logger, opts Options) *API {
	if opts.BlobCopy == "" {
		opts.BlobCopy = CopyAuto
	}
	if opts.BodyIdle <= 0 {
		opts.BodyIdle = 30 * time.Second
	}
	return &API{region: r, log: log, opts: opts, uploads: newUploadSlots(opts.MaxUploads, opts.MaxUploadsPerClient)}
}

// DataHandler serves the data endpoint: blob GET and HEAD only, each
// request logged in one line.
func (a *API) DataHandler() http.Handler {
	blobs := a.handle(func(w http.ResponseWriter, r *http.Request) error {
		route, err := ParseRoute(r.URL.Path)
		if err != nil || route.Kind != KindBlob || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			return ocierr.Unsupported.Withf("the data endpoint serves blob GET and HEAD only; use the registry endpoint")
		}
		if err := a.networkCheck(r); err != nil {
			return err
		}
		if err := a.checkData(r); err != nil {
			return err
		}
		return a.serveBlob(w, r, route)
	})
	return a.logged(blobs)
}

// Handler returns the region node's whole HTTP surface: /v2/, the health
// endpoints, and internal (the /_georeg/ endpoints between regions; nil
// for none), each request logged in one line.
func (a *API) Handler(internal http.Handler) http.Handler {
	// Not a ServeMux: it cleans paths and redirects, so /v2/a//b or
	// /v2/../x would never reach ParseRoute to be refused as NAME_INVALID.
	v2 := a.handle(a.serveV2)
	return a.logged(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "/healthz" {
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		if p == "/readyz" {
			a.readyz(w, r)
			return
		}
		if err := a.networkCheck(r); err != nil {
			a.handle(func(http.ResponseWriter, *http.Request) error { return err }).ServeHTTP(w, r)
			return
		}
		switch {
		case p == "/v2" || strings.HasPrefix(p, "/v2/"):
			v2.ServeHTTP(w, r)
		case p == "/metrics" && a.opts.Metrics != nil:
			a.serveMetrics(w, r)
		case internal != nil:
			internal.ServeHTTP(w, r) // /_georeg/, /oauth2/token
		default:
			http.NotFound(w, r)
		}
	}))
}

// readyz reports whether the region can take writes: the metadata store
// answers and the content store is writable.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.region.Ready(ctx); err != nil {
		a.log.WarnContext(ctx, "not ready", "error", err)
		// Why is for the operator (the log, or the door and peers with
		// their tokens): a store's error can name hosts and paths.
		why := "see the region's log"
		if a.opts.Auth == nil || !a.opts.Auth.Enabled() || (a.opts.IsProbe != nil && a.opts.IsProbe(r)) {
			why = err.Error()
		}
		http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle turns a handler's error into the OCI envelope.
func (a *API) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		err := h(w, r)
		if err == nil {
			return
		}
		err = a.region.NoteWrite(err) // a full disk is STORAGE_FULL, and marks the region full
		// A failure the client caused (it went away, its body stalled) is
		// answered as such whatever error it surfaced as.
		oe, gone := clientFailure(r, err)
		coded := oe != nil
		if !coded {
			oe, coded = ocierr.From(err)
		}
		if rec, ok := w.(*recorder); ok {
			rec.code = oe.Code.Name
			if !coded {
				rec.err = err
			}
			if gone {
				rec.status, rec.wroteHeader, rec.gone = statusClientGone, true, err
				return // nobody is there to answer
			}
			if rec.wroteHeader {
				return // the body was under way; the client sees a short body
			}
		}
		ocierr.Write(w, r, oe)
	})
}

// serveV2 lists every route of the API.
func (a *API) serveV2(w http.ResponseWriter, r *http.Request) error {
	route, err := ParseRoute(r.URL.Path)
	if err != nil {
		var re *RouteError
		if errors.As(err, &re) && re.BadName {
			return ocierr.NameInvalid.Withf("%s", re.Msg)
		}
		return ocierr.NameUnknown.Withf("%v", err)
	}
	m := r.Method
	if rec, ok := w.(*recorder); ok {
		rec.route = route.Kind.String()
	}
	if ns := r.URL.Query().Get("ns"); ns != "" && a.opts.Upstream != nil && (m == http.MethodGet || m == http.MethodHead) &&
		(route.Kind == KindManifest || route.Kind == KindBlob) {
		// A mirror's request for a repository of registry ns: the cache
		// rule's target repository answers it.
		if target, ok := a.opts.Upstream.Mirror(r.Context(), ns, route.Repo); ok {
			route.Repo = target
		}
	}
	if rec, ok := w.(*recorder); ok {
		rec.repo = route.Repo
	}
	if err := a.authorize(w, r, route); err != nil {
		return err
	}
	if writes(route.Kind, m) {
		if _, elsewhere := a.sessionElsewhere(route.Ref); route.Kind != KindUpload || !elsewhere {
			// Out of space: refused at once, before a byte is read.
			if err := a.region.CheckWritable(); err != nil {
				return err
			}
			if carriesBlob(route.Kind, r) && !a.isPeer(r) {
				release, err := a.uploads.take(uploadClient(r))
				if err != nil {
					return err
				}
				defer release()
			}
		}
	}
	switch route.Kind {
	case KindBase:
		if m == http.MethodGet || m == http.MethodHead {
			return a.base(w, r)
		}
	case KindCatalog:
		if m == http.MethodGet {
			return a.catalog(w, r)
		}
	case KindBlob:
		switch m {
		case http.MethodGet, http.MethodHead:
			return a.getBlob(w, r, route)
		case http.MethodDelete:
			return a.deleteBlob(w, r, route)
		}
	case KindUploads:
		if m == http.MethodPost {
			return a.startUpload(w, r, route)
		}
	case KindUpload:
		if target, ok := a.sessionElsewhere(route.Ref); ok {
			return a.forward(w, r, target)
		}
		switch m {
		case http.MethodGet:
			return a.uploadStatus(w, r, route)
		case http.MethodPatch:
			return a.patchUpload(w, r, route)
		case http.MethodPut:
			return a.finishUpload(w, r, route)
		case http.MethodDelete:
			return a.cancelUpload(w, r, route)
		}
	case KindManifest:
		switch m {
		case http.MethodGet, http.MethodHead:
			return a.getManifest(w, r, route)
		case http.MethodPut:
			return a.putManifest(w, r, route)
		case http.MethodDelete:
			return a.deleteManifest(w, r, route)
		}
	case KindTags:
		if m == http.MethodGet {
			return a.tags(w, r, route)
		}
	case KindReferrers:
		if m == http.MethodGet {
			return a.referrers(w, r, route)
		}
	}
	return ocierr.Unsupported.Withf("%s is not supported on %s endpoints", m, route.Kind)
}

// writes reports whether method on a route of kind stores content (an
// upload, a manifest): what a region out of space refuses. Deletes free
// space rather than take it, and are taken.
func writes(kind Kind, method string) bool {
	switch kind {
	case KindUploads:
		return method == http.MethodPost
	case KindUpload:
		return method == http.MethodPatch || method == http.MethodPut
	case KindManifest:
		return method == http.MethodPut
	}
	return false
}

// sessionElsewhere returns the endpoint of the region an upload session
// id names, when that is a peer and not this region: the session's bytes
// are there.
func (a *API) sessionElsewhere(id string) (string, bool) {
	name, _, ok := strings.Cut(id, ".")
	if !ok || name == a.region.Name() || a.opts.Peers == nil {
		return "", false
	}
	return a.opts.Peers.Endpoint(name)
}

// forward sends the request, body streamed, to the region at target and
// relays its answer: an upload session stays in the region that started
// it, whichever region a request on it reaches.
func (a *API) forward(w http.ResponseWriter, r *http.Request, target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	var failed error
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		ErrorHandler: func(_ http.ResponseWriter, _ *http.Request, err error) { failed = err },
	}
	proxy.ServeHTTP(w, r)
	if failed != nil {
		return ocierr.BlobUploadUnknown.Withf("upload %s belongs to the region at %s, which did not answer (%v); retry later or start a new upload", r.URL.Path, target, failed)
	}
	return nil
}

// base answers the version check (end-1).
func (a *API) base(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	if r.Method == http.MethodGet {
		_, _ = io.WriteString(w, "{}")
	}
	return nil
}

// servedFrom says where a blob response's bytes came from.
type servedFrom struct{ readThrough bool }

type servedKey struct{}

// servedReadThrough marks the request's blob as read through from a peer.
func servedReadThrough(ctx context.Context) {
	if f, ok := ctx.Value(servedKey{}).(*servedFrom); ok {
		f.readThrough = true
	}
}

// countServed counts the blob bytes a client (not a peer) got, as served
// from this region or read through (region.CountTraffic).
func (a *API) countServed(r *http.Request, rec *recorder, served *servedFrom) {
	if rec.route != "blob" || r.Method != http.MethodGet || (rec.status != http.StatusOK && rec.status != http.StatusPartialContent) || rec.bytes <= 0 || a.isPeer(r) {
		return
	}
	kind := region.TrafficServed
	if served.readThrough {
		kind = region.TrafficServedReadThrough
	}
	a.region.CountTraffic(kind, "", rec.bytes)
	if a.opts.Upstream != nil {
		if rule, ok := a.opts.Upstream.RuleOf(r.Context(), rec.repo); ok && rec.repo != "" {
			a.region.CountTraffic(region.TrafficCacheServed, rule, rec.bytes)
		}
	}
}

// logged writes one line per finished request with its status, OCI code,
// bytes and duration, and tags it with a request id (X-Request-Id).
func (a *API) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		client, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			client = r.RemoteAddr
		}
		if a.opts.Auth != nil {
			if addr, err := a.opts.Auth.ClientAddr(r); err == nil {
				client = addr.String()
			}
		}
		r = r.WithContext(webhook.WithRequest(r.Context(), &webhook.Request{
			ID: id, Host: r.Host, Method: r.Method, UserAgent: r.UserAgent(), Client: client}))
		body := &countingBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: a.opts.BodyIdle}
		r.Body = body // counts what was read, also of a chunked body (no Content-Length)
		r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, body))
		served := &servedFrom{}
		r = r.WithContext(context.WithValue(r.Context(), servedKey{}, served))
		next.ServeHTTP(rec, r)
		took := time.Since(start)
		in := body.n
		if rec.route == "" {
			rec.route = routeClass(r.URL.Path)
		}
		a.opts.Metrics.Request(rec.route, r.Method, rec.status, in, rec.bytes, took)
		a.countServed(r, rec, served)
		level := slog.LevelInfo
		attrs := []slog.Attr{
			slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", rec.status), slog.Int64("bytes_out", rec.bytes),
			slog.Duration("duration", took), slog.String("remote", r.RemoteAddr),
		}
		if in > 0 {
			attrs = append(attrs, slog.Int64("bytes_in", in))
		}
		if rec.code != "" {
			attrs = append(attrs, slog.String("code", rec.code))
		}
		if rec.err != nil {
			level = slog.LevelError
			attrs = append(attrs, slog.String("error", rec.err.Error()))
		}
		if rec.gone != nil { // the client's doing, not the server's
			level = slog.LevelInfo
			attrs = append(attrs, slog.String("client_gone", rec.gone.Error()))
		}
		a.log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// recorder notes what a handler wrote. It keeps ReadFrom, so copying a
// file to the response still uses sendfile.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	code        string
	err         error
	route       string // the route class, for metrics
	repo        string // the repository, once the route is parsed
	gone        error  // the client went away mid-request (status 499)
}

func (r *recorder) WriteHeader(status int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = status, true
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.(io.ReaderFrom).ReadFrom(src)
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// countingBody counts the bytes a handler reads of a request body, cuts
// it when no byte arrives for idle (a read deadline on the connection,
// moved at every read), and remembers the first error reading it: the
// client's failure, not the server's.
type countingBody struct {
	io.ReadCloser
	n       int64
	rc      *http.ResponseController
	idle    time.Duration
	err     error
	timeout bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.rc != nil && b.idle > 0 {
		if b.rc.SetReadDeadline(time.Now().Add(b.idle)) != nil {
			b.rc = nil // not supported by this connection: no idle bound
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
		var ne net.Error
		b.timeout = errors.As(err, &ne) && ne.Timeout()
	}
	return n, err
}

type bodyKey struct{}

// statusClientGone is what the log and metrics record for a request whose
// client went away before it was answered (nginx's 499): not a server
// error, and nothing is written back.
const statusClientGone = 499

// clientFailure tells a request that failed because of its client: the
// client went away (its connection closed mid-body, or the request was
// cancelled: gone, nothing can be answered), or its body stalled past
// the idle bound (REQUEST_TIMEOUT). nil when the failure is the server's.
func clientFailure(r *http.Request, err error) (*ocierr.Error, bool) {
	body, _ := r.Context().Value(bodyKey{}).(*countingBody)
	switch {
	case body != nil && body.timeout:
		return ocierr.RequestTimeout.Withf("no byte of the request body arrived for %s; the upload session is as before this request: send the chunk again", body.idle), false
	case r.Context().Err() != nil, body != nil && body.err != nil:
		return ocierr.Unknown.Withf("client went away"), true
	}
	return nil, false
}
