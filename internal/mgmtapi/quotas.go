package mgmtapi

import (
	"context"
	"net/http"

	"github.com/georeg/georeg/internal/cost"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// Quotas and the price table: registry policies (replicated settings).
//
//	GET    /_georeg/v1/policies/quotas                  every quota, with what counts against it here
//	PUT    /_georeg/v1/policies/quotas?scope=S          set S's quota: {"limitBytes": N}; S a repository or * (the registry)
//	DELETE /_georeg/v1/policies/quotas?scope=S          remove it
//	GET|PUT /_georeg/v1/policies/prices                 the price table (internal/cost)
func (a *API) registerPolicies(mux *http.ServeMux) {
	mux.HandleFunc("GET /_georeg/v1/policies/quotas", a.handle(a.listQuotas))
	mux.HandleFunc("PUT /_georeg/v1/policies/quotas", a.handle(a.putQuota))
	mux.HandleFunc("DELETE /_georeg/v1/policies/quotas", a.handle(a.deleteQuota))
	mux.HandleFunc("GET /_georeg/v1/policies/prices", a.handle(a.showPrices))
	mux.HandleFunc("PUT /_georeg/v1/policies/prices", a.handle(a.putPrices))
}

func (a *API) listQuotas(ctx context.Context, _ *http.Request) (any, error) {
	return a.region.Quotas(ctx)
}

// quotaScope reads ?scope=, checked.
func quotaScope(r *http.Request) (string, error) {
	scope := r.URL.Query().Get("scope")
	if err := region.ValidateQuotaScope(scope); err != nil {
		return "", ocierr.NameInvalid.Withf("scope=%q: %v", scope, err)
	}
	return scope, nil
}

func (a *API) putQuota(ctx context.Context, r *http.Request) (any, error) {
	scope, err := quotaScope(r)
	if err != nil {
		return nil, err
	}
	var q region.Quota
	if err := decode(r, &q, `{"limitBytes": 10737418240}`); err != nil {
		return nil, err
	}
	if _, err := a.region.SetQuota(ctx, scope, q); err != nil {
		return nil, err
	}
	all, err := a.region.Quotas(ctx)
	if err != nil {
		return nil, err
	}
	for _, v := range all {
		if v.Scope == scope {
			return v, nil
		}
	}
	return nil, ocierr.Unavailable.Withf("the quota of %s was set but is not listed; list the quotas again", scope)
}

func (a *API) deleteQuota(ctx context.Context, r *http.Request) (any, error) {
	scope, err := quotaScope(r)
	if err != nil {
		return nil, err
	}
	v, err := a.region.DeleteQuota(ctx, scope)
	if err != nil {
		return nil, err
	}
	return map[string]string{"scope": scope, "version": v.String()}, nil
}

func (a *API) showPrices(ctx context.Context, _ *http.Request) (any, error) {
	return a.region.Prices(ctx)
}

func (a *API) putPrices(ctx context.Context, r *http.Request) (any, error) {
	var p cost.Prices
	if err := decode(r, &p, `{"currency": "USD", "interRegionPerGB": 0.02, "internetPerGB": 0.087, "regions": {"westeurope": {"internetPerGB": 0.08}}}`); err != nil {
		return nil, err
	}
	return a.region.SetPrices(ctx, p)
}
