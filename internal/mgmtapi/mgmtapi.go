// Package mgmtapi serves a region's management and status endpoints under
// /_georeg/v1/ (JSON; documented in docs/api.md):
//
//	GET /_georeg/v1/regions                 the registry's regions and endpoints
//	GET /_georeg/v1/images/status?repository=R&reference=REF
//	                                        where an image is: present or pending per region
//	/_georeg/v1/status, /replications...    replication state and regions (replications.go)
//	/_georeg/v1/webhooks...                 webhooks and their delivery logs (webhooks.go)
//
// With auth on they need an admin or a peer credential (SetAccess).
package mgmtapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/cache"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/outbound"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/transfer"
	"github.com/georeg/georeg/internal/webhook"
)

// RegionInfo names a region and where it serves.
type RegionInfo struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	// Link is how this region reaches the region over the inter-region
	// link (its replication endpoint), when that differs from Endpoint,
	// the address clients use: work between regions (an ask to fetch)
	// goes over it.
	Link string `json:"-"`
}

// RegionsResponse answers GET /_georeg/v1/regions.
type RegionsResponse struct {
	Self    string       `json:"self"` // the region that answered
	Regions []RegionInfo `json:"regions"`
}

// RegionState is one region's state for an image.
type RegionState struct {
	Name  string     `json:"name"`
	State string     `json:"state"` // present, pending, deleted, or unknown (could not be asked)
	Since *time.Time `json:"since,omitempty"`
	// Version is the delete's, for a region where the object is deleted.
	Version string `json:"version,omitempty"`
	// Error says why the region could not be asked (state unknown).
	Error string `json:"error,omitempty"`
}

// ImageStatus answers GET /_georeg/v1/images/status.
type ImageStatus struct {
	Repository string        `json:"repository"`
	Reference  string        `json:"reference"`
	Digest     string        `json:"digest"`
	Region     string        `json:"region"`   // the region that answered
	Complete   bool          `json:"complete"` // present in every region; deleted in every region for a delete
	Regions    []RegionState `json:"regions"`
	// Deleted: the answering region holds a delete of the reference (a
	// tag, a manifest, or a blob when the digest names no manifest), at
	// DeletedVersion. Regions then says, asked of each region, where the
	// delete has arrived.
	Deleted        bool   `json:"deleted,omitempty"`
	DeletedVersion string `json:"deletedVersion,omitempty"`
	// RestorableUntil: the deleted manifest (or the manifest the deleted
	// tag pointed at) is kept restorable by soft delete in the answering
	// region until then.
	RestorableUntil *time.Time `json:"restorableUntil,omitempty"`
	// OnDemand: the repository falls under a cache rule with --replicate
	// on-demand. "present" in a region then means its manifest is there
	// and pullable; its layers are fetched there when first pulled.
	OnDemand bool `json:"onDemand,omitempty"`
}

// API serves the endpoints for one region.
type API struct {
	region  *region.Region
	regions []RegionInfo // this region first, then its configured peers
	status  StatusSource // nil in a registry of one region

	auth     *auth.Service              // nil: open
	isPeer   func(r *http.Request) bool // a request from another region
	isProbe  func(r *http.Request) bool // from a region or the front door (status and routing flags only)
	signer   *peerauth.Signer           // this region's tokens, for asking other regions (nil: none)
	browser  BrowserGuard               // CSRF and DNS-rebinding checks (SetBrowserGuard)
	outbound *outbound.Policy           // what a registered replica endpoint may be (nil: anything)
	peersTLS bool                       // registered replica endpoints must be https (auth on)
	importer *transfer.Importer
	cache    *cache.Puller
	client   *http.Client
}

// SetAccess makes every endpoint need an admin (guard.Admin) or a peer
// credential (isPeer); the probe endpoints (status, the replications list)
// also take the front door's (isProbe). Calls to other regions go through
// client with signer's tokens.
func (a *API) SetAccess(guard *auth.Service, isPeer, isProbe func(*http.Request) bool, signer *peerauth.Signer, client *http.Client) {
	a.auth, a.isPeer, a.isProbe, a.signer, a.client = guard, isPeer, isProbe, signer, client
}

// peerGet GETs path from another region's management API as a peer
// (within 5 s) and decodes its JSON answer, read up to limit bytes, into
// out.
func (a *API) peerGet(ctx context.Context, name, endpoint, path string, limit int64, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint, "/")+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.peerDo(ctx, req, name)
	if err != nil {
		return fmt.Errorf("unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ocierr.Read(resp)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(out)
}

// peerDo sends a request to region name's management API as a peer
// (with no credential when that endpoint does not prove it is region
// name).
func (a *API) peerDo(ctx context.Context, req *http.Request, name string) (*http.Response, error) {
	if err := a.signer.Authorize(ctx, req, name); err != nil {
		return nil, err
	}
	return a.client.Do(req)
}

// DashboardHeader is the header the dashboard's requests carry (value
// "dashboard"): their 401s carry no basic-auth challenge.
const DashboardHeader = "X-Georeg-Client"

// SetPeersTLS has replica endpoints registered with plain http refused:
// with auth on, regions talk over TLS.
func (a *API) SetPeersTLS(on bool) { a.peersTLS = on }

// SetOutbound has replica endpoints registered by admins checked against
// the registry's outbound policy.
func (a *API) SetOutbound(p *outbound.Policy) { a.outbound = p }

// SetBrowserGuard sets the checks every request other than a region's or
// the front door's passes first.
func (a *API) SetBrowserGuard(g BrowserGuard) { a.browser = g }

// New returns the API of r; regions are r itself and its configured
// peers (registered replicas are read from the settings).
func New(r *region.Region, regions []RegionInfo, status StatusSource) *API {
	return &API{region: r, regions: regions, status: status, client: &http.Client{Timeout: 10 * time.Second}}
}

// Register adds the endpoints to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /_georeg/v1/regions", a.handle(a.listRegions))
	mux.HandleFunc("GET /_georeg/v1/images/status", a.handle(a.imageStatus))
	mux.HandleFunc("GET /_georeg/v1/status", a.handleProbe(a.ownStatus))
	mux.HandleFunc("GET /_georeg/v1/replications", a.handleProbe(a.listReplications))
	mux.HandleFunc("GET /_georeg/v1/replications/{name}", a.handle(a.showReplication))
	mux.HandleFunc("PUT /_georeg/v1/replications/{name}", a.handle(a.putReplication))
	mux.HandleFunc("DELETE /_georeg/v1/replications/{name}", a.handle(a.deleteReplication))
	a.registerWebhooks(mux)
	a.registerAccess(mux)
	a.registerRepositories(mux)
	a.registerImports(mux)
	a.registerPolicies(mux)
	a.registerSoftDelete(mux)
	a.registerCache(mux)
	a.encryptionRoutes(mux)
	mux.HandleFunc("GET /_georeg/v1/audit", a.handle(a.audit))
	mux.HandleFunc("GET /_georeg/v1/usage", a.handle(a.usage))
	mux.HandleFunc("GET /_georeg/v1/dashboard", a.handle(a.dashboard))
	mux.HandleFunc("POST /_georeg/v1/gc", a.handle(a.runGC))
	mux.HandleFunc("GET /_georeg/v1/gc", a.handle(a.lastGC))
}

// ownStatus reports this region's replication status.
func (a *API) ownStatus(ctx context.Context, _ *http.Request) (any, error) {
	if a.status == nil {
		w, why := a.region.Writable()
		return replicate.Status{State: replicate.StateReady, Peers: []replicate.PeerStatus{}, Writable: w, NotWritable: why}, nil
	}
	return a.status.Status(ctx)
}

// handle serves an admin-only endpoint.
func (a *API) handle(h func(ctx context.Context, r *http.Request) (any, error)) http.HandlerFunc {
	return a.serve(func(w http.ResponseWriter, r *http.Request) (string, error) { return a.auth.Admin(w, r) }, h)
}

// handleProbe serves an endpoint the front door reads to route: an admin,
// a region or the front door may use it.
func (a *API) handleProbe(h func(ctx context.Context, r *http.Request) (any, error)) http.HandlerFunc {
	return a.serve(func(w http.ResponseWriter, r *http.Request) (string, error) {
		if a.isProbe != nil && a.isProbe(r) {
			return "", nil
		}
		return a.auth.Admin(w, r)
	}, h)
}

// handleRepo serves an endpoint about the repository named by ?name=: an
// admin, or a token allowed action on that repository (auth.Service.
// Repository), may use it.
func (a *API) handleRepo(action string, h func(ctx context.Context, r *http.Request) (any, error)) http.HandlerFunc {
	return a.serve(func(w http.ResponseWriter, r *http.Request) (string, error) {
		name := r.URL.Query().Get("name")
		if err := oci.ValidateRepository(name); err != nil {
			return "", ocierr.NameInvalid.Withf("name=%q: %v", name, err)
		}
		return a.auth.Repository(w, r, name, action)
	}, h)
}

// serve runs h once allow (skipped with auth off, and for peers) lets the
// request through, and writes h's answer as JSON or its error. Who allow
// says the request is becomes the actor of what h changes (the audit log,
// webhook events).
func (a *API) serve(allow func(w http.ResponseWriter, r *http.Request) (string, error), h func(ctx context.Context, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.isProbe == nil || !a.isProbe(r) { // regions and the door are no browsers
			if err := a.browser.Check(r); err != nil {
				oe, _ := ocierr.From(err)
				ocierr.Write(w, r, oe)
				return
			}
		}
		if a.auth != nil && (a.isPeer == nil || !a.isPeer(r)) {
			actor, err := allow(w, r)
			if err != nil && r.Header.Get(DashboardHeader) == "dashboard" {
				// The dashboard signs in with tokens: no basic-auth prompt
				// (a browser would cache the credentials for every page).
				w.Header().Del("WWW-Authenticate")
			}
			if err != nil {
				oe, _ := ocierr.From(err)
				ocierr.Write(w, r, oe)
				return
			}
			webhook.SetActor(r.Context(), actor)
		}
		body, err := h(r.Context(), r)
		if err != nil {
			oe, _ := ocierr.From(err)
			ocierr.Write(w, r, oe)
			return
		}
		if l, ok := body.(lines); ok {
			streamLines(w, r, l)
			return
		}
		if p, ok := body.(paged); ok {
			w.Header().Set("Link", linkNext(p.next))
			body = p.items
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(body)
	}
}

func (a *API) listRegions(ctx context.Context, _ *http.Request) (any, error) {
	all, err := a.replications(ctx)
	if err != nil {
		return nil, err
	}
	out := RegionsResponse{Self: a.region.Name()}
	for _, r := range all {
		out.Regions = append(out.Regions, RegionInfo{Name: r.Name, Endpoint: r.Endpoint})
	}
	return out, nil
}

func (a *API) imageStatus(ctx context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	repo, ref := q.Get("repository"), q.Get("reference")
	if err := oci.ValidateRepository(repo); err != nil {
		return nil, ocierr.NameInvalid.Withf("repository: %v", err)
	}
	if ref == "" {
		return nil, ocierr.ManifestInvalid.Withf("reference: give a tag or a digest")
	}
	local := q.Get("local") == "true"
	if v, deleted, err := a.region.Tombstone(ctx, repo, ref); err != nil {
		return nil, err
	} else if deleted {
		return a.deletedStatus(ctx, repo, ref, v, local)
	}
	st, err := a.region.ImageStatus(ctx, repo, ref)
	if err != nil {
		return nil, err
	}
	out := ImageStatus{Repository: repo, Reference: ref, Digest: st.Digest.String(), Region: a.region.Name(), Complete: true,
		OnDemand: a.region.OnDemand(ctx, repo)}
	all, err := a.replications(ctx)
	if err != nil {
		return nil, err
	}
	for _, info := range all {
		if local && info.Name != a.region.Name() {
			continue
		}
		rs := RegionState{Name: info.Name, State: "pending"}
		if since, ok := st.Present[info.Name]; ok && (info.Name != a.region.Name() || st.Here) {
			rs.State, rs.Since = "present", &since
		} else {
			out.Complete = false
		}
		out.Regions = append(out.Regions, rs)
	}
	sort.Slice(out.Regions, func(i, j int) bool { return out.Regions[i].Name < out.Regions[j].Name })
	return out, nil
}

// deletedStatus answers the status of a reference deleted here at version
// v: with local, this region's state only; otherwise every region is
// asked for its own (at once, each bounded by peerGet's timeout), since a
// region records no acknowledgement of a delete.
func (a *API) deletedStatus(ctx context.Context, repo, ref string, v hlc.Version, local bool) (ImageStatus, error) {
	at := v.Wall()
	out := ImageStatus{Repository: repo, Reference: ref, Region: a.region.Name(), Deleted: true, DeletedVersion: v.String(), Complete: true,
		Regions: []RegionState{{Name: a.region.Name(), State: "deleted", Version: v.String(), Since: &at}}}
	if oci.IsDigest(ref) {
		out.Digest = ref
	}
	if until, ok, err := a.region.RestorableUntil(ctx, repo, ref); err != nil {
		return out, err
	} else if ok {
		out.RestorableUntil = &until
	}
	if local {
		return out, nil
	}
	all, err := a.replications(ctx)
	if err != nil {
		return out, err
	}
	var mu sync.Mutex
	var g errgroup.Group
	for _, info := range all {
		if info.Name == a.region.Name() {
			continue
		}
		g.Go(func() error {
			rs := RegionState{Name: info.Name, State: "pending"}
			var theirs ImageStatus
			q := url.Values{"repository": {repo}, "reference": {ref}, "local": {"true"}}
			err := a.peerGet(ctx, info.Name, info.Endpoint, "/_georeg/v1/images/status?"+q.Encode(), 1<<20, &theirs)
			tv, _ := hlc.ParseVersion(theirs.DeletedVersion)
			switch {
			case err == nil && theirs.Deleted && !tv.Less(v):
				t := tv.Wall()
				rs.State, rs.Version, rs.Since = "deleted", theirs.DeletedVersion, &t
			case err == nil && len(theirs.Regions) == 1 && theirs.Regions[0].State == "present":
				rs.State = "present"
			case err != nil && !ocierr.ManifestUnknown.Is(err):
				rs.State, rs.Error = "unknown", err.Error()
			}
			mu.Lock()
			out.Regions = append(out.Regions, rs)
			if rs.State != "deleted" {
				out.Complete = false
			}
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	sort.Slice(out.Regions, func(i, j int) bool { return out.Regions[i].Name < out.Regions[j].Name })
	return out, nil
}
