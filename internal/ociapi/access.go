package ociapi

import (
	"net/http"
	"strings"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/webhook"
)

// need is what a request on route needs: the route class decides the
// action (pull for reads, push for uploads and manifest PUTs, delete for
// DELETEs, the catalog scope for the catalog).
func need(route Route, method string) auth.Need {
	read := method == http.MethodGet || method == http.MethodHead
	switch route.Kind {
	case KindBase:
		return auth.Need{Base: true}
	case KindCatalog:
		return auth.Need{Catalog: true}
	case KindTags:
		return auth.Need{Repo: route.Repo, Actions: []string{auth.ActionPull, auth.ActionMetadataRead}}
	case KindReferrers:
		return auth.Need{Repo: route.Repo, Actions: []string{auth.ActionPull}}
	case KindBlob, KindManifest:
		switch {
		case read:
			return auth.Need{Repo: route.Repo, Actions: []string{auth.ActionPull}}
		case method == http.MethodDelete:
			return auth.Need{Repo: route.Repo, Actions: []string{auth.ActionDelete}}
		}
	}
	return auth.Need{Repo: route.Repo, Actions: []string{auth.ActionPush}}
}

// authorize checks r against the registry's access rules; peers holding
// a peer credential pass.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, route Route) error {
	if a.opts.Auth == nil || a.isPeer(r) {
		return nil
	}
	actor, err := a.opts.Auth.Check(w, r, need(route, r.Method))
	webhook.SetActor(r.Context(), actor)
	if ocierr.Denied.Is(err) {
		if aerr := a.region.RecordAudit(r.Context(), actor, region.AuditDenied, route.Repo, "denied", r.Method+" "+route.Kind.String()); aerr != nil {
			a.log.WarnContext(r.Context(), "audit a refused request", "error", aerr)
		}
	}
	return err
}

// mayPull reports whether r may read repo: a cross-repository mount
// needs it of its source, and falls back to a plain upload without it.
func (a *API) mayPull(r *http.Request, repo string) bool {
	if a.opts.Auth == nil || a.isPeer(r) {
		return true
	}
	_, err := a.opts.Auth.Check(discard{}, r, auth.Need{Repo: repo, Actions: []string{auth.ActionPull}})
	return err == nil
}

// discard is a ResponseWriter whose headers go nowhere: a check whose
// challenge must not reach the client.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// routeClass names the class of a path outside /v2 for metrics.
func routeClass(p string) string {
	switch {
	case strings.HasPrefix(p, "/_georeg/v1/feed"):
		return "feed"
	case strings.HasPrefix(p, "/_georeg/"):
		return "mgmt"
	case p == auth.TokenPath:
		return "token"
	case p == "/healthz" || p == "/readyz":
		return "health"
	case p == "/metrics":
		return "metrics"
	case p == "/ui" || strings.HasPrefix(p, "/ui/"):
		return "ui"
	case p == "/v2" || strings.HasPrefix(p, "/v2/"):
		return "invalid" // a /v2 path that did not parse
	}
	return "other"
}

// serveMetrics serves /metrics: open without auth, else to an admin or a
// peer.
func (a *API) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if a.opts.Auth != nil && !a.isPeer(r) {
		if _, err := a.opts.Auth.Admin(w, r); err != nil {
			a.handle(func(http.ResponseWriter, *http.Request) error { return err }).ServeHTTP(w, r)
			return
		}
	}
	a.opts.Metrics.Handler().ServeHTTP(w, r)
}
