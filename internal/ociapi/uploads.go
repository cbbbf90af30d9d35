package ociapi

import (
	"fmt"
	"net/http"

	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

func uploadLocation(repo, id string) string { return "/v2/" + repo + "/blobs/uploads/" + id }
func blobLocation(repo, d string) string    { return "/v2/" + repo + "/blobs/" + d }

// rangeHeader renders the spec's Range of an upload holding size bytes:
// "0-<last offset>", and "0-0" while empty (as distribution answers).
func rangeHeader(size int64) string {
	if size == 0 {
		return "0-0"
	}
	return fmt.Sprintf("0-%d", size-1)
}

func setUploadHeaders(w http.ResponseWriter, repo, id string, size int64) {
	h := w.Header()
	h.Set("Location", uploadLocation(repo, id))
	h.Set("Range", rangeHeader(size))
	h.Set("Docker-Upload-UUID", id)
	h.Set("Content-Length", "0")
}

// startUpload serves POST /v2/<name>/blobs/uploads/ (end-4a, end-4b,
// end-11): a monolithic upload with ?digest=, a cross-repository mount
// with ?mount=&from= (falling back to a new session when the source lacks
// the blob), or a new session.
func (a *API) startUpload(w http.ResponseWriter, r *http.Request, route Route) error {
	ctx := r.Context()
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		d, err := parseDigest(mount)
		if err != nil {
			return err
		}
		if from := q.Get("from"); from != "" {
			if err := oci.ValidateRepository(from); err != nil {
				return ocierr.NameInvalid.Withf("from: %v", err)
			}
			// Without pull on the source, the mount is a plain upload: it
			// must not tell whether the blob is there.
			ok := false
			var err error
			if a.mayPull(r, from) {
				ok, err = a.region.MountBlob(ctx, route.Repo, from, d)
			}
			if err != nil {
				return err
			}
			if ok {
				h := w.Header()
				h.Set("Location", blobLocation(route.Repo, d.String()))
				h.Set("Docker-Content-Digest", d.String())
				h.Set("Content-Length", "0")
				w.WriteHeader(http.StatusCreated)
				return nil
			}
		}
	}
	if dg := q.Get("digest"); dg != "" {
		d, err := parseDigest(dg)
		if err != nil {
			return err
		}
		if _, err := a.region.PutBlob(ctx, route.Repo, d, r.ContentLength, r.Body); err != nil {
			return err
		}
		h := w.Header()
		h.Set("Location", blobLocation(route.Repo, d.String()))
		h.Set("Docker-Content-Digest", d.String())
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusCreated)
		return nil
	}
	id, err := a.region.StartUpload(ctx, route.Repo)
	if err != nil {
		return err
	}
	setUploadHeaders(w, route.Repo, id, 0)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// chunk reads the byte range a PATCH or closing PUT declares.
func chunk(r *http.Request) (region.Chunk, error) {
	c := region.Chunk{Start: -1, Length: r.ContentLength, Body: r.Body}
	if cr := r.Header.Get("Content-Range"); cr != "" {
		rng, err := parseContentRange(cr)
		if err != nil {
			return c, ocierr.BlobUploadInvalid.Withf("Content-Range %q is malformed; send START-END, inclusive, e.g. 0-1023", cr)
		}
		if r.ContentLength >= 0 && r.ContentLength != rng.length() {
			return c, ocierr.SizeInvalid.Withf("Content-Range %q covers %d bytes but Content-Length is %d", cr, rng.length(), r.ContentLength)
		}
		c.Start, c.Length = rng.Start, rng.length()
	}
	return c, nil
}

// patchUpload serves PATCH of a chunk (end-5), streamed or with
// Content-Range; a chunk out of order is 416 and changes nothing.
func (a *API) patchUpload(w http.ResponseWriter, r *http.Request, route Route) error {
	c, err := chunk(r)
	if err != nil {
		return err
	}
	size, err := a.region.AppendUpload(r.Context(), route.Repo, route.Ref, c)
	if err != nil {
		if ocierr.RangeInvalid.Is(err) {
			setUploadHeaders(w, route.Repo, route.Ref, size)
		}
		return err
	}
	setUploadHeaders(w, route.Repo, route.Ref, size)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// finishUpload serves the closing PUT (end-6), with an optional last chunk.
func (a *API) finishUpload(w http.ResponseWriter, r *http.Request, route Route) error {
	dg := r.URL.Query().Get("digest")
	if dg == "" {
		return ocierr.DigestInvalid.Withf("the closing PUT of an upload needs ?digest=<digest of the whole blob>")
	}
	d, err := parseDigest(dg)
	if err != nil {
		return err
	}
	c, err := chunk(r)
	if err != nil {
		return err
	}
	if _, err := a.region.FinishUpload(r.Context(), route.Repo, route.Ref, d, c); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Location", blobLocation(route.Repo, d.String()))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// uploadStatus serves GET of an upload (end-13).
func (a *API) uploadStatus(w http.ResponseWriter, r *http.Request, route Route) error {
	size, err := a.region.UploadStatus(r.Context(), route.Repo, route.Ref)
	if err != nil {
		return err
	}
	setUploadHeaders(w, route.Repo, route.Ref, size)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// cancelUpload serves DELETE of an upload.
func (a *API) cancelUpload(w http.ResponseWriter, r *http.Request, route Route) error {
	if err := a.region.CancelUpload(r.Context(), route.Repo, route.Ref); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
