package ociapi

import (
	"net/http"

	"github.com/georeg/georeg/internal/auth"
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
	return a.opts.Auth.Check(w, r, need(route, r.Method))
}

// mayPull reports whether r may read repo: a cross-repository mount
// needs it of its source, and falls back to a plain upload without it.
func (a *API) mayPull(r *http.Request, repo string) bool {
	if a.opts.Auth == nil || a.isPeer(r) {
		return true
	}
	return a.opts.Auth.Check(discard{}, r, auth.Need{Repo: repo, Actions: []string{auth.ActionPull}}) == nil
}

// discard is a ResponseWriter whose headers go nowhere: a check whose
// challenge must not reach the client.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
