package mgmtapi

import (
	"context"
	"net/http"

	"github.com/georeg/georeg/internal/ocierr"
)

// runGC serves POST /_georeg/v1/gc[?dryRun=true]: collect this region's
// garbage now and answer the report.
func (a *API) runGC(ctx context.Context, r *http.Request) (any, error) {
	dry := r.URL.Query().Get("dryRun")
	if dry != "" && dry != "true" && dry != "false" {
		return nil, ocierr.RequestInvalid.Withf("dryRun=%q: true or false", dry)
	}
	rep, err := a.region.GC(ctx, dry == "true")
	if err != nil {
		return nil, ocierr.Unknown.Withf("garbage collection stopped: %v (what it did is in GET /_georeg/v1/gc)", err)
	}
	return rep, nil
}

// lastGC serves GET /_georeg/v1/gc: this region's last report.
func (a *API) lastGC(_ context.Context, _ *http.Request) (any, error) {
	if rep := a.region.LastGC(); rep != nil {
		return rep, nil
	}
	return nil, ocierr.NameUnknown.Withf("this region has not collected garbage since it started; run georeg gc run")
}
