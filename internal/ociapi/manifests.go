package ociapi

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/cache"
	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
)

// getManifest serves GET and HEAD of a manifest by tag or digest (end-3).
// The body is the stored bytes, with their media type and digest, or,
// on a cold pull of a cached image not stored whole yet, the upstream's
// bytes, verified (cache.Image).
func (a *API) getManifest(w http.ResponseWriter, r *http.Request, route Route) error {
	m, err := a.region.GetManifest(r.Context(), route.Repo, route.Ref)
	var pass *cache.Image // the upstream's manifest, served as the image is fetched
	cached := a.opts.Upstream != nil && !a.isPeer(r)
	passing := ""
	if cached && ocierr.ManifestUnknown.Is(err) {
		// A cold pull of this repository's image is streaming through
		// another region: it has this manifest (an index's platform)
		// sooner than any other region.
		passing = a.opts.Upstream.Passing(route.Repo)
	}
	// A repository a cache rule covers asks the cache first: the region
	// that fetches its images for the registry holds them, or fetches
	// them (no round of every region before a cold pull's first byte).
	// Every region is asked after it, when it fails: an image pushed to
	// such a repository, or cached while that region was away.
	covered := false
	if cached && ocierr.ManifestUnknown.Is(err) {
		_, covered = a.opts.Upstream.RuleOf(r.Context(), route.Repo)
	}
	peersAsked := false
	if ocierr.ManifestUnknown.Is(err) && validRef(route.Ref) && a.askPeers(r) && passing == "" && !covered {
		peersAsked = true
		var d digest.Digest
		if d, err = a.fromPeers(r.Context(), route); err == nil {
			m, err = a.region.GetManifest(r.Context(), route.Repo, d.String())
		}
	}
	if ocierr.ManifestUnknown.Is(err) && validRef(route.Ref) && cached {
		// No region holds it: the artifact cache's upstream, when a rule
		// covers the repository.
		if img, ok, uerr := a.opts.Upstream.Ensure(r.Context(), route.Repo, route.Ref); ok {
			err = uerr
			switch {
			case uerr != nil:
			case img.Payload != nil:
				// Not stored whole yet: the upstream's manifest, verified,
				// served as it is fetched (a cold pull streams).
				pass = &img
			case img.Via != "" && a.opts.ReadThrough:
				// Stored by region Via for the registry: read it through
				// from there.
				var d digest.Digest
				if d, err = a.opts.Peers.EnsureManifestFrom(r.Context(), img.Via, route.Repo, img.Digest.String()); err == nil {
					m, err = a.region.GetManifest(r.Context(), route.Repo, d.String())
				}
			case img.Via != "":
				var d digest.Digest
				if d, err = a.fromPeers(r.Context(), route); err == nil {
					m, err = a.region.GetManifest(r.Context(), route.Repo, d.String())
				}
			default:
				m, err = a.region.GetManifest(r.Context(), route.Repo, img.Digest.String())
			}
		}
		if err != nil && !peersAsked && passing == "" && a.askPeers(r) {
			if d, perr := a.fromPeers(r.Context(), route); perr == nil {
				m, err = a.region.GetManifest(r.Context(), route.Repo, d.String())
			} else if !ocierr.ManifestUnknown.Is(perr) || (ocierr.ManifestUnknown.Is(err) && namesRegions(perr)) {
				// The peers' answer when it says more than "not here": why
				// a region could not answer, or where the image is.
				err = perr
			}
		}
	}
	if err != nil {
		return err
	}
	var d digest.Digest
	var mediaType, version string
	var payload []byte
	if pass != nil {
		d, mediaType, payload = pass.Digest, pass.MediaType, pass.Payload
	} else {
		d, mediaType, payload = m.Digest, m.MediaType, m.Payload
		if !m.Version.IsZero() {
			version = m.Version.String()
		}
	}
	if a.opts.Upstream != nil && !oci.IsDigest(route.Ref) && !a.isPeer(r) {
		// A cached tag: moved upstream since it was last checked?
		nd, stale, ok, rerr := a.opts.Upstream.Revalidate(r.Context(), route.Repo, route.Ref, d, false)
		if ok && rerr == nil {
			if stale {
				w.Header().Set(CacheHeader, "stale")
			}
			if nd != d {
				if m, err = a.region.GetManifest(r.Context(), route.Repo, nd.String()); err != nil {
					return err
				}
				d, mediaType, payload, version = m.Digest, m.MediaType, m.Payload, ""
				if !m.Version.IsZero() {
					version = m.Version.String()
				}
			}
		}
	}
	if a.opts.Upstream != nil && !a.isPeer(r) {
		// A pull of a cached image: it is in use (the cache's eviction).
		if _, ok := a.opts.Upstream.RuleOf(r.Context(), route.Repo); ok {
			a.region.NotePulled(route.Repo, d)
		}
	}
	// By tag, a client that lists the manifest types it accepts and not
	// this one cannot use it (as distribution answers old clients). By
	// digest the client asked for exactly these bytes.
	if !oci.IsDigest(route.Ref) && !accepts(r.Header.Values("Accept"), mediaType) {
		return ocierr.ManifestUnknown.WithDetail(
			"tag "+route.Ref+" is a "+mediaType+", which the Accept header does not list; add it to Accept",
			map[string]string{"mediaType": mediaType, "digest": d.String()})
	}
	h := w.Header()
	h.Set("Content-Type", mediaType)
	h.Set("Content-Length", strconv.Itoa(len(payload)))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	if a.isPeer(r) && version != "" {
		h.Set(feed.VersionHeader, version)
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	_, _ = w.Write(payload)
	return nil
}

// namesRegions reports whether a MANIFEST_UNKNOWN of the peers names
// regions (where the image is, or that could not be asked).
func namesRegions(err error) bool {
	var oe *ocierr.Error
	if !errors.As(err, &oe) {
		return false
	}
	d, _ := oe.Detail.(map[string]any)
	_, have := d["available_in"]
	_, unreachable := d["unreachable"]
	return have || unreachable
}

// fromPeers fetches a manifest this region lacks from the peers and
// returns its digest (invariant 6), or names where it exists when
// read-through is off.
func (a *API) fromPeers(ctx context.Context, route Route) (digest.Digest, error) {
	if !a.opts.ReadThrough {
		return "", a.opts.Peers.Where(ctx, route.Repo, route.Ref)
	}
	return a.opts.Peers.EnsureManifest(ctx, route.Repo, route.Ref)
}

// validRef reports a well-formed tag or digest: only those are worth
// asking other regions for.
func validRef(ref string) bool {
	if oci.IsDigest(ref) {
		_, err := oci.ParseDigest(ref)
		return err == nil
	}
	return oci.ValidateTag(ref) == nil
}

// accepts reports whether Accept headers allow mediaType. No Accept, a
// wildcard, or an Accept naming no manifest type at all (e.g. only
// application/json) allows anything.
func accepts(values []string, mediaType string) bool {
	namesManifest := false
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if mt == mediaType || mt == "*/*" || mt == "application/*" {
				return true
			}
			if oci.IsManifestMediaType(mt) {
				namesManifest = true
			}
		}
	}
	return !namesManifest
}

// putManifest serves PUT of a manifest (end-7). The body is read whole
// but never beyond the size limit.
func (a *API) putManifest(w http.ResponseWriter, r *http.Request, route Route) error {
	limit := a.region.MaxManifestSize()
	payload, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return ocierr.ManifestInvalid.Withf("reading the manifest body: %v", err)
	}
	ct := r.Header.Get("Content-Type")
	res, err := a.region.PutManifest(r.Context(), route.Repo, route.Ref, ct, payload)
	if ocierr.ManifestBlobUnknown.Is(err) && a.askPeers(r) {
		// A push split across regions: its blobs went to another region
		// (invariant 7). Fetch them, then accept.
		if rerr := a.opts.Peers.EnsureReferences(r.Context(), route.Repo, ct, payload); rerr == nil {
			res, err = a.region.PutManifest(r.Context(), route.Repo, route.Ref, ct, payload)
		} else if oe, ok := ocierr.From(err); ok {
			// Say why no region could give what is missing (deleted
			// here, say, with no newer copy anywhere).
			why := *oe
			why.Message = oe.Message + "; from other regions: " + rerr.Error()
			err = &why
		}
	}
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Location", "/v2/"+route.Repo+"/manifests/"+res.Digest.String())
	h.Set("Docker-Content-Digest", res.Digest.String())
	if res.Subject != "" {
		h.Set("OCI-Subject", res.Subject.String())
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// deleteManifest serves DELETE of a manifest by digest or of a tag
// (end-9).
func (a *API) deleteManifest(w http.ResponseWriter, r *http.Request, route Route) error {
	if err := a.region.DeleteManifest(r.Context(), route.Repo, route.Ref); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
