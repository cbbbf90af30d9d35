package ociapi

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/georeg/georeg/internal/oci"
)

// Kind names the endpoint a /v2 path addresses.
type Kind int

// The endpoints of OCI Distribution Spec v1.1 (and the _catalog extension).
const (
	KindBase      Kind = iota + 1 // /v2/
	KindCatalog                   // /v2/_catalog
	KindBlob                      // /v2/<name>/blobs/<digest>
	KindUploads                   // /v2/<name>/blobs/uploads/
	KindUpload                    // /v2/<name>/blobs/uploads/<id>
	KindManifest                  // /v2/<name>/manifests/<reference>
	KindTags                      // /v2/<name>/tags/list
	KindReferrers                 // /v2/<name>/referrers/<digest>
)

var kindNames = map[Kind]string{
	KindBase: "base", KindCatalog: "catalog", KindBlob: "blob", KindUploads: "uploads",
	KindUpload: "upload", KindManifest: "manifest", KindTags: "tags", KindReferrers: "referrers",
}

func (k Kind) String() string { return kindNames[k] }

// Route is a parsed /v2 path. Repo is a valid repository name for every
// kind but base and catalog; Ref is the digest, tag or upload id the path
// ends with, checked only for its shape (see ParseRoute).
type Route struct {
	Kind Kind
	Repo string
	Ref  string
}

// RouteError says why a path is not a route: a bad repository name (the
// caller answers NAME_INVALID) or no endpoint at all (NAME_UNKNOWN).
type RouteError struct {
	BadName bool
	Msg     string
}

func (e *RouteError) Error() string { return e.Msg }

var uploadIDRegexp = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ParseRoute parses a decoded URL path under /v2/. Repository names contain
// slashes and ServeMux cannot match a multi-segment wildcard mid-path, so
// the endpoint is recognised from the right and what precedes it is the
// repository name, checked against the reference grammar.
//
// An upload id is checked to be a safe single segment; a digest or tag
// reference is passed through for the handler to parse, so it can answer
// with the code the spec gives each mistake.
func ParseRoute(path string) (Route, error) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return Route{Kind: KindBase}, nil
		}
		return Route{}, &RouteError{Msg: fmt.Sprintf("path %q is not under /v2/", path)}
	}
	switch rest {
	case "":
		return Route{Kind: KindBase}, nil
	case "_catalog":
		return Route{Kind: KindCatalog}, nil
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	var r Route
	var repoSegs int
	switch {
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		r, repoSegs = Route{Kind: KindTags}, n-2
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads" && segs[n-1] == "":
		r, repoSegs = Route{Kind: KindUploads}, n-3
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		r, repoSegs = Route{Kind: KindUploads}, n-2
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		if !uploadIDRegexp.MatchString(segs[n-1]) {
			return Route{}, &RouteError{Msg: fmt.Sprintf("upload id %q is malformed; use the Location the upload's POST returned", segs[n-1])}
		}
		r, repoSegs = Route{Kind: KindUpload, Ref: segs[n-1]}, n-3
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] != "":
		r, repoSegs = Route{Kind: KindBlob, Ref: segs[n-1]}, n-2
	case n >= 3 && segs[n-2] == "manifests" && segs[n-1] != "":
		r, repoSegs = Route{Kind: KindManifest, Ref: segs[n-1]}, n-2
	case n >= 3 && segs[n-2] == "referrers" && segs[n-1] != "":
		r, repoSegs = Route{Kind: KindReferrers, Ref: segs[n-1]}, n-2
	default:
		return Route{}, &RouteError{Msg: fmt.Sprintf("no endpoint at %q; the OCI Distribution API has /v2/<name>/{blobs,manifests,tags,referrers}/...", path)}
	}
	r.Repo = strings.Join(segs[:repoSegs], "/")
	if err := oci.ValidateRepository(r.Repo); err != nil {
		return Route{}, &RouteError{BadName: true, Msg: err.Error()}
	}
	return r, nil
}
