package mgmtapi

import (
	"context"
	"net/http"

	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/transfer"
)

// Imports (server side, as `az acr import`):
//
//	POST /_georeg/v1/imports        {"source", "image", "username", "password", "force", "referrers"}: start; answers the job
//	GET  /_georeg/v1/imports/{id}   the job's progress (in the region that runs it)

// SetImporter serves imports through im.
func (a *API) SetImporter(im *transfer.Importer) { a.importer = im }

func (a *API) registerImports(mux *http.ServeMux) {
	mux.HandleFunc("POST /_georeg/v1/imports", a.handle(a.startImport))
	mux.HandleFunc("GET /_georeg/v1/imports/{id}", a.handle(a.showImport))
}

func (a *API) startImport(ctx context.Context, r *http.Request) (any, error) {
	if a.importer == nil {
		return nil, ocierr.Unsupported.Withf("this region does not run imports")
	}
	var req transfer.Request
	if err := decode(r, &req, `{"source": "registry.example.com/repo:tag", "image": "repo:tag"}`); err != nil {
		return nil, err
	}
	return a.importer.Start(ctx, req)
}

func (a *API) showImport(ctx context.Context, r *http.Request) (any, error) {
	if a.importer == nil {
		return nil, ocierr.Unsupported.Withf("this region does not run imports")
	}
	return a.importer.Get(ctx, r.PathValue("id"))
}
