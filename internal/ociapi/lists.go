package ociapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
)

// maxPage is the most entries one tag list or catalog response carries; a
// larger n is cut to it, with a Link to the rest.
const maxPage = 1000

// page reads n and last. Without n a response carries up to maxPage
// entries and a Link when there are more.
func page(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	last = q.Get("last")
	n = maxPage
	if s := q.Get("n"); s != "" {
		v, perr := strconv.Atoi(s)
		if perr != nil || v < 0 {
			return 0, "", ocierr.PaginationNumberInvalid.Withf("n=%q must be a non-negative integer", s)
		}
		n = min(v, maxPage)
	}
	return n, last, nil
}

// writeList writes a JSON body and, when more entries follow, a Link to
// the next page (RFC 8288, rel="next").
func writeList(w http.ResponseWriter, path string, items []string, n int, body any) error {
	if len(items) > n {
		q := url.Values{"n": {strconv.Itoa(n)}, "last": {items[n-1]}}
		w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, path, q.Encode()))
	}
	return writeJSON(w, "application/json", body)
}

func writeJSON(w http.ResponseWriter, contentType string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
	return nil
}

// tags serves the tag list (end-8a, end-8b) in lexical order.
func (a *API) tags(w http.ResponseWriter, r *http.Request, route Route) error {
	n, last, err := page(r)
	if err != nil {
		return err
	}
	tags := []string{}
	if n > 0 {
		got, err := a.region.Tags(r.Context(), route.Repo, last, n+1)
		if err != nil {
			return err
		}
		tags = append(tags, got...)
	}
	body := struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{route.Repo, tags[:min(n, len(tags))]}
	return writeList(w, "/v2/"+route.Repo+"/tags/list", tags, n, body)
}

// catalog serves /v2/_catalog, the repository list extension.
func (a *API) catalog(w http.ResponseWriter, r *http.Request) error {
	n, last, err := page(r)
	if err != nil {
		return err
	}
	repos := []string{}
	if n > 0 {
		got, err := a.region.Repositories(r.Context(), last, n+1)
		if err != nil {
			return err
		}
		repos = append(repos, got...)
	}
	body := struct {
		Repositories []string `json:"repositories"`
	}{repos[:min(n, len(repos))]}
	return writeList(w, "/v2/_catalog", repos, n, body)
}

// maxReferrersBytes bounds the descriptors (mostly annotations) of one
// referrers page: past it the page ends, with a Link to the rest.
const maxReferrersBytes = 4 << 20

// referrers serves the referrers API (end-12a, end-12b): an image index of
// the manifests whose subject is the digest, filtered by artifactType. A
// subject nobody refers to has an empty list, never 404. Pages hold up to
// n (default and at most maxPage) descriptors and maxReferrersBytes, with
// a Link (rel="next") to the rest, as the spec allows.
func (a *API) referrers(w http.ResponseWriter, r *http.Request, route Route) error {
	d, err := oci.ParseDigest(route.Ref)
	if err != nil {
		return ocierr.DigestInvalid.Withf("%v", err)
	}
	q := r.URL.Query()
	artifactType := q.Get("artifactType")
	n, last, err := page(r)
	if err != nil {
		return err
	}
	var after digest.Digest
	if last != "" {
		if after, err = oci.ParseDigest(last); err != nil {
			return ocierr.PaginationNumberInvalid.Withf("last=%q must be a digest (follow the Link header)", last)
		}
	}
	refs, more, err := a.region.Referrers(r.Context(), route.Repo, d, artifactType, after, max(n, 1), maxReferrersBytes)
	if err != nil {
		return err
	}
	if more {
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {refs[len(refs)-1].Digest.String()}}
		if artifactType != "" {
			next.Set("artifactType", artifactType)
		}
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/referrers/%s?%s>; rel="next"`, route.Repo, d, next.Encode()))
	}
	index := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{}}
	index.SchemaVersion = 2
	for _, ref := range refs {
		index.Manifests = append(index.Manifests, v1.Descriptor{
			MediaType: ref.MediaType, Digest: ref.Digest, Size: ref.Size,
			ArtifactType: ref.ArtifactType, Annotations: ref.Annotations,
		})
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, v1.MediaTypeImageIndex, index)
}
