package mgmtapi

import (
	"context"
	"net/http"
	"time"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
)

// Soft delete (region/softdelete.go):
//
//	GET|PUT /_georeg/v1/policies/soft-delete            {"status": "enabled", "days": 7}
//	GET     /_georeg/v1/repository/deleted?name=R       R's restorable manifests, as the region asked holds them
//	POST    /_georeg/v1/repository/restore?name=R       {"digest", "tag", "force"}: restore one
//	DELETE  /_georeg/v1/repository/deleted?name=R&digest=D  purge it now, in every region
//	GET     /_georeg/v1/repository/tag-history?name=R[&tag=T]   the moves of R's tags this region recorded
//	POST    /_georeg/v1/repository/restore-time?name=R  {"time", "dryRun", "keepNewer"}: every tag as it was then
func (a *API) registerSoftDelete(mux *http.ServeMux) {
	mux.HandleFunc("GET /_georeg/v1/repository/tag-history", a.handleRepo(auth.ActionPull, a.tagHistory))
	mux.HandleFunc("POST /_georeg/v1/repository/restore-time", a.handleRepo(auth.ActionPush, a.restoreTime))
	mux.HandleFunc("GET /_georeg/v1/policies/soft-delete", a.handle(a.showSoftDelete))
	mux.HandleFunc("PUT /_georeg/v1/policies/soft-delete", a.handle(a.putSoftDelete))
	mux.HandleFunc("GET /_georeg/v1/repository/deleted", a.handleRepo(auth.ActionPull, a.listDeleted))
	mux.HandleFunc("POST /_georeg/v1/repository/restore", a.handleRepo(auth.ActionPush, a.restore))
	mux.HandleFunc("DELETE /_georeg/v1/repository/deleted", a.handleRepo(auth.ActionDelete, a.purge))
}

func (a *API) showSoftDelete(ctx context.Context, _ *http.Request) (any, error) {
	return a.region.SoftDeletePolicy(ctx)
}

func (a *API) putSoftDelete(ctx context.Context, r *http.Request) (any, error) {
	p, err := a.region.SoftDeletePolicy(ctx)
	if err != nil {
		return nil, err
	}
	if err := decode(r, &p, `{"status": "enabled", "days": 7}`); err != nil {
		return nil, err
	}
	if err := a.region.SetSoftDeletePolicy(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

func (a *API) listDeleted(ctx context.Context, r *http.Request) (any, error) {
	return a.region.DeletedManifests(ctx, r.URL.Query().Get("name"))
}

// RestoreBody asks for a restore.
type RestoreBody struct {
	Digest string `json:"digest"`
	Tag    string `json:"tag,omitempty"`
	Force  bool   `json:"force,omitempty"`
}

func (a *API) restore(ctx context.Context, r *http.Request) (any, error) {
	var b RestoreBody
	if err := decode(r, &b, `{"digest": "sha256:...", "tag": "v1", "force": false}`); err != nil {
		return nil, err
	}
	d, err := oci.ParseDigest(b.Digest)
	if err != nil {
		return nil, ocierr.DigestInvalid.Withf("digest %q: %v", b.Digest, err)
	}
	if b.Tag != "" {
		if err := oci.ValidateTag(b.Tag); err != nil {
			return nil, ocierr.ManifestInvalid.Withf("tag %q: %v", b.Tag, err)
		}
	}
	return a.region.RestoreManifest(ctx, r.URL.Query().Get("name"), d, b.Tag, b.Force)
}

func (a *API) tagHistory(ctx context.Context, r *http.Request) (any, error) {
	tag := r.URL.Query().Get("tag")
	if tag != "" {
		if err := oci.ValidateTag(tag); err != nil {
			return nil, ocierr.RequestInvalid.Withf("tag %q: %v", tag, err)
		}
	}
	return a.region.TagHistory(ctx, r.URL.Query().Get("name"), tag)
}

// RestoreTimeBody asks for every tag of a repository as it was at Time.
type RestoreTimeBody struct {
	Time      time.Time `json:"time"`
	DryRun    bool      `json:"dryRun,omitempty"`
	KeepNewer bool      `json:"keepNewer,omitempty"`
}

func (a *API) restoreTime(ctx context.Context, r *http.Request) (any, error) {
	var b RestoreTimeBody
	if err := decode(r, &b, `{"time": "2026-12-01T10:00:00Z", "dryRun": true, "keepNewer": false}`); err != nil {
		return nil, err
	}
	if b.Time.IsZero() {
		return nil, ocierr.RequestInvalid.Withf("time is required: an RFC 3339 time such as 2026-12-01T10:00:00Z")
	}
	return a.region.RestoreToTime(ctx, r.URL.Query().Get("name"), b.Time, b.DryRun, b.KeepNewer)
}

func (a *API) purge(ctx context.Context, r *http.Request) (any, error) {
	d, err := oci.ParseDigest(r.URL.Query().Get("digest"))
	if err != nil {
		return nil, ocierr.DigestInvalid.Withf("digest=%q: %v", r.URL.Query().Get("digest"), err)
	}
	return a.region.PurgeManifest(ctx, r.URL.Query().Get("name"), d)
}
