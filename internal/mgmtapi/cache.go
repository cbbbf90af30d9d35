package mgmtapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/cache"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
)

// The artifact cache's rules and credential sets (internal/cache):
// replicated settings, any region answers.
//
//	GET         /_georeg/v1/cache-rules                 every rule
//	GET|PUT|DELETE /_georeg/v1/cache-rules/{name}       one rule: {"source", "target", "credentialSet"}
//	GET         /_georeg/v1/credential-sets             every set (no password)
//	GET|PUT|DELETE /_georeg/v1/credential-sets/{name}   one set: {"loginServer", "username", "password"}
//	POST        /_georeg/v1/cache/refresh?repository=R&tag=T   check a cached tag upstream now
//	POST        /_georeg/v1/cache/ensure?repository=R&reference=REF  fetch an image from its upstream here (a region asks the one that fetches it for all)
func (a *API) registerCache(mux *http.ServeMux) {
	mux.HandleFunc("POST /_georeg/v1/cache/ensure", a.handle(a.ensureCached))
	mux.HandleFunc("POST /_georeg/v1/cache/refresh", a.handle(a.refreshCached))
	mux.HandleFunc("GET /_georeg/v1/cache/pulls", a.handle(a.cachePulls))
	mux.HandleFunc("GET /_georeg/v1/cache-rules", a.handle(a.listCacheRules))
	mux.HandleFunc("GET /_georeg/v1/cache-rules/{name}", a.handle(a.showCacheRule))
	mux.HandleFunc("PUT /_georeg/v1/cache-rules/{name}", a.handle(a.putCacheRule))
	mux.HandleFunc("DELETE /_georeg/v1/cache-rules/{name}", a.handle(a.deleteCacheSetting(cache.RuleKind)))
	mux.HandleFunc("GET /_georeg/v1/credential-sets", a.handle(a.listCredentialSets))
	mux.HandleFunc("GET /_georeg/v1/credential-sets/{name}", a.handle(a.showCredentialSet))
	mux.HandleFunc("PUT /_georeg/v1/credential-sets/{name}", a.handle(a.putCredentialSet))
	mux.HandleFunc("DELETE /_georeg/v1/credential-sets/{name}", a.handle(a.deleteCacheSetting(cache.CredentialSetKind)))
}

// CacheRuleView is a rule as listed.
type CacheRuleView struct {
	Name string `json:"name"`
	cache.Rule
}

// CredentialSetView is a credential set as listed: never its password.
type CredentialSetView struct {
	Name        string    `json:"name"`
	LoginServer string    `json:"loginServer"`
	Username    string    `json:"username"`
	PasswordSet bool      `json:"passwordSet"`
	Created     time.Time `json:"created"`
}

func cacheName(r *http.Request, kind string) (string, error) {
	n := r.PathValue("name")
	if err := cache.ValidateName(kind, n); err != nil {
		return "", ocierr.RequestInvalid.Withf("%v", err)
	}
	return n, nil
}

func (a *API) listCacheRules(ctx context.Context, _ *http.Request) (any, error) {
	ss, err := a.region.Settings(ctx, cache.RuleKind)
	if err != nil {
		return nil, err
	}
	out := []CacheRuleView{}
	for _, s := range ss {
		var r cache.Rule
		if json.Unmarshal(s.Value, &r) == nil {
			out = append(out, CacheRuleView{Name: s.Name, Rule: r})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (a *API) showCacheRule(ctx context.Context, r *http.Request) (any, error) {
	n, err := cacheName(r, cache.RuleKind)
	if err != nil {
		return nil, err
	}
	s, err := a.region.Setting(ctx, cache.RuleKind, n)
	if err != nil {
		return nil, err
	}
	var rule cache.Rule
	if err := json.Unmarshal(s.Value, &rule); err != nil {
		return nil, err
	}
	return CacheRuleView{Name: n, Rule: rule}, nil
}

func (a *API) putCacheRule(ctx context.Context, r *http.Request) (any, error) {
	n, err := cacheName(r, cache.RuleKind)
	if err != nil {
		return nil, err
	}
	var rule cache.Rule
	if s, err := a.region.Setting(ctx, cache.RuleKind, n); err == nil {
		_ = json.Unmarshal(s.Value, &rule) // an update changes what the body names
	}
	created := rule.Created
	if err := decode(r, &rule, `{"source": "docker.io/library/*", "target": "hub/*", "credentialSet": "hub"}`); err != nil {
		return nil, err
	}
	if err := rule.Validate(); err != nil {
		return nil, ocierr.RequestInvalid.Withf("cache rule %s: %v", n, err)
	}
	if rule.CredentialSet != "" {
		if _, err := a.region.Setting(ctx, cache.CredentialSetKind, rule.CredentialSet); err != nil {
			return nil, ocierr.RequestInvalid.Withf("cache rule %s: credential set %q: %v", n, rule.CredentialSet, err)
		}
	}
	rule.Created = created
	if rule.Created.IsZero() {
		rule.Created = time.Now().UTC()
	}
	if err := a.put(ctx, cache.RuleKind, n, rule); err != nil {
		return nil, err
	}
	return CacheRuleView{Name: n, Rule: rule}, nil
}

func (a *API) listCredentialSets(ctx context.Context, _ *http.Request) (any, error) {
	ss, err := a.region.Settings(ctx, cache.CredentialSetKind)
	if err != nil {
		return nil, err
	}
	out := []CredentialSetView{}
	for _, s := range ss {
		var c cache.CredentialSet
		if json.Unmarshal(s.Value, &c) == nil {
			out = append(out, credentialView(s.Name, c))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func credentialView(n string, c cache.CredentialSet) CredentialSetView {
	return CredentialSetView{Name: n, LoginServer: c.LoginServer, Username: c.Username, PasswordSet: c.Password != "", Created: c.Created}
}

func (a *API) showCredentialSet(ctx context.Context, r *http.Request) (any, error) {
	n, err := cacheName(r, cache.CredentialSetKind)
	if err != nil {
		return nil, err
	}
	s, err := a.region.Setting(ctx, cache.CredentialSetKind, n)
	if err != nil {
		return nil, err
	}
	var c cache.CredentialSet
	if err := json.Unmarshal(s.Value, &c); err != nil {
		return nil, err
	}
	return credentialView(n, c), nil
}

func (a *API) putCredentialSet(ctx context.Context, r *http.Request) (any, error) {
	n, err := cacheName(r, cache.CredentialSetKind)
	if err != nil {
		return nil, err
	}
	var c cache.CredentialSet
	if s, err := a.region.Setting(ctx, cache.CredentialSetKind, n); err == nil {
		_ = json.Unmarshal(s.Value, &c)
	}
	created := c.Created
	if err := decode(r, &c, `{"loginServer": "docker.io", "username": "me", "password": "..."}`); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, ocierr.RequestInvalid.Withf("credential set %s: %v", n, err)
	}
	c.Created = created
	if c.Created.IsZero() {
		c.Created = time.Now().UTC()
	}
	if err := a.put(ctx, cache.CredentialSetKind, n, c); err != nil {
		return nil, err
	}
	return credentialView(n, c), nil
}

func (a *API) deleteCacheSetting(kind string) func(ctx context.Context, r *http.Request) (any, error) {
	return func(ctx context.Context, r *http.Request) (any, error) {
		n, err := cacheName(r, kind)
		if err != nil {
			return nil, err
		}
		v, err := a.region.DeleteSetting(ctx, kind, n)
		if err != nil {
			return nil, err
		}
		return map[string]string{"name": n, "version": v.String()}, nil
	}
}

// SetCache has the API refresh cached tags with c.
func (a *API) SetCache(c *cache.Puller) { a.cache = c }

// Refreshed answers a refresh of a cached tag.
type Refreshed struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
	Changed    bool   `json:"changed"`
	Region     string `json:"region"`
}

func (a *API) refreshCached(ctx context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	repo, tag := q.Get("repository"), q.Get("tag")
	if err := oci.ValidateRepository(repo); err != nil {
		return nil, ocierr.NameInvalid.Withf("repository=%q: %v", repo, err)
	}
	if err := oci.ValidateTag(tag); err != nil {
		return nil, ocierr.RequestInvalid.Withf("tag=%q: %v", tag, err)
	}
	if a.cache == nil {
		return nil, ocierr.Unsupported.Withf("this node runs no artifact cache")
	}
	have, err := a.region.ResolveTag(ctx, repo, tag)
	if ocierr.ManifestUnknown.Is(err) || ocierr.NameUnknown.Is(err) {
		// Not cached yet: fetch it here, and answer once it is stored.
		_, stored, err := a.cache.EnsureHere(ctx, repo, tag)
		if err != nil {
			return nil, err
		}
		d, err := stored(ctx)
		if err != nil {
			return nil, err
		}
		return Refreshed{Repository: repo, Tag: tag, Digest: d.String(), Changed: true, Region: a.region.Name()}, nil
	}
	if err != nil {
		return nil, err
	}
	d, _, ok, err := a.cache.Revalidate(ctx, repo, tag, have, true)
	if !ok && err == nil {
		return nil, ocierr.NameUnknown.Withf("no cache rule covers repository %s", repo)
	}
	if err != nil {
		return nil, err
	}
	return Refreshed{Repository: repo, Tag: tag, Digest: d.String(), Changed: d != have, Region: a.region.Name()}, nil
}

// Ensured answers a fetch another region asked for. With early=1 the
// answer is two JSON lines: the first as soon as the manifest arrived
// (with MediaType and Payload while the image is not stored whole yet:
// the asking region serves it, and its clients' blob GETs stream from
// this region's fetch), the second once the image is stored here
// (Stored) or the fetch failed (Error).
type Ensured struct {
	Digest    string       `json:"digest,omitempty"`
	MediaType string       `json:"mediaType,omitempty"`
	Payload   []byte       `json:"payload,omitempty"`
	Stored    bool         `json:"stored,omitempty"`
	Error     *EnsureError `json:"error,omitempty"`
}

// EnsureError is why a fetch another region asked for failed: an OCI
// error code and message.
type EnsureError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (a *API) ensureCached(ctx context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	repo, ref := q.Get("repository"), q.Get("reference")
	if err := oci.ValidateRepository(repo); err != nil {
		return nil, ocierr.NameInvalid.Withf("repository=%q: %v", repo, err)
	}
	if !oci.IsDigest(ref) && oci.ValidateTag(ref) != nil {
		return nil, ocierr.RequestInvalid.Withf("reference=%q: give a tag or a digest", ref)
	}
	if a.cache == nil {
		return nil, ocierr.Unsupported.Withf("this node runs no artifact cache")
	}
	img, stored, err := a.cache.EnsureHere(ctx, repo, ref)
	if err != nil {
		return nil, err
	}
	if q.Get("early") != "1" {
		d, err := stored(ctx)
		if err != nil {
			return nil, err
		}
		return Ensured{Digest: d.String()}, nil
	}
	return lines(func(emit func(any) error) error {
		if err := emit(Ensured{Digest: img.Digest.String(), MediaType: img.MediaType, Payload: img.Payload}); err != nil || img.Payload == nil {
			return err
		}
		if _, err := stored(ctx); err != nil {
			oe, _ := ocierr.From(err)
			return emit(Ensured{Error: &EnsureError{Code: oe.Code.Name, Message: oe.Message}})
		}
		return emit(Ensured{Stored: true})
	}), nil
}

// AskToFetch asks region name to fetch repo:ref from its upstream for the
// registry (cache.Ask), bounded by 10 minutes. It returns as soon as that
// region has the manifest; done then tells when the image is stored
// there.
func (a *API) AskToFetch(ctx context.Context, name, repo, ref string) (cache.Image, <-chan error, error) {
	// A configured region is asked over the inter-region link, as
	// replication reaches it.
	endpoint, err := a.peerLink(ctx, name)
	if err != nil {
		return cache.Image{}, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	u := strings.TrimSuffix(endpoint, "/") + "/_georeg/v1/cache/ensure?early=1&repository=" + url.QueryEscape(repo) + "&reference=" + url.QueryEscape(ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		cancel()
		return cache.Image{}, nil, err
	}
	if err := a.signer.Authorize(ctx, req, name); err != nil {
		cancel()
		return cache.Image{}, nil, err
	}
	// A region that does not answer its status within 5 s is not waited
	// for: the image is fetched here. The status is asked beside the
	// request, not before it, so a healthy region costs one round trip.
	alive := make(chan error, 1)
	go func() {
		var st json.RawMessage
		alive <- a.peerGet(ctx, name, endpoint, "/_georeg/v1/status", 1<<20, &st)
	}()
	type answer struct {
		resp *http.Response
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		// No overall timeout but ctx's: an image takes as long as it takes.
		resp, err := (&http.Client{Transport: a.client.Transport}).Do(req)
		answered <- answer{resp, err}
	}()
	var ans answer
	select {
	case ans = <-answered:
	case err := <-alive:
		if err == nil {
			ans = <-answered
			break
		}
		cancel()
		if ans = <-answered; ans.resp != nil {
			ans.resp.Body.Close()
		}
		return cache.Image{}, nil, fmt.Errorf("region %s: %w", name, err)
	}
	if ans.err != nil {
		cancel()
		return cache.Image{}, nil, fmt.Errorf("unreachable: %w", ans.err)
	}
	resp := ans.resp
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		return cache.Image{}, nil, ocierr.Read(resp)
	}
	// A manifest is at most 4 MiB, base64 in JSON a third more.
	dec := json.NewDecoder(io.LimitReader(resp.Body, 8<<20))
	var e Ensured
	if err := dec.Decode(&e); err != nil {
		resp.Body.Close()
		cancel()
		return cache.Image{}, nil, fmt.Errorf("region %s's answer: %w", name, err)
	}
	d, err := digest.Parse(e.Digest)
	if err != nil {
		resp.Body.Close()
		cancel()
		return cache.Image{}, nil, fmt.Errorf("region %s's answer: %w", name, err)
	}
	img := cache.Image{Digest: d}
	if e.Payload == nil {
		resp.Body.Close()
		cancel()
		return img, nil, nil
	}
	// Served as is to a client: it must be what the digest says.
	if d.Algorithm().FromBytes(e.Payload) != d {
		resp.Body.Close()
		cancel()
		return cache.Image{}, nil, fmt.Errorf("region %s answered a manifest that does not hash to %s", name, d)
	}
	img.MediaType, img.Payload = e.MediaType, e.Payload
	done := make(chan error, 1)
	go func() {
		defer cancel()
		defer resp.Body.Close()
		var last Ensured
		err := dec.Decode(&last)
		switch {
		case err != nil:
			err = fmt.Errorf("region %s's fetch of %s:%s: %w", name, repo, ref, err)
		case last.Error != nil:
			c := ocierr.Lookup(last.Error.Code)
			if c == nil {
				c = ocierr.Unknown
			}
			err = &ocierr.Error{Code: c, Message: last.Error.Message}
		case !last.Stored:
			err = fmt.Errorf("region %s's fetch of %s:%s ended without storing it", name, repo, ref)
		}
		done <- err
	}()
	return img, done, nil
}

// Pulls answers GET /_georeg/v1/cache/pulls?repository=R: when each of
// R's manifests was last pulled in this region (what the artifact
// cache's eviction asks every region).
type Pulls struct {
	Region string                      `json:"region"`
	Pulls  map[digest.Digest]time.Time `json:"pulls"`
}

func (a *API) cachePulls(ctx context.Context, r *http.Request) (any, error) {
	repo := r.URL.Query().Get("repository")
	if err := oci.ValidateRepository(repo); err != nil {
		return nil, ocierr.NameInvalid.Withf("repository=%q: %v", repo, err)
	}
	pulls, err := a.region.LastPulled(ctx, repo)
	if err != nil {
		return nil, err
	}
	return Pulls{Region: a.region.Name(), Pulls: pulls}, nil
}

// PeerPulls asks region name when it last pulled each of repo's
// manifests (cache.Puller.SetEviction), over the inter-region link,
// bounded by 5 s.
func (a *API) PeerPulls(ctx context.Context, name, repo string) (map[digest.Digest]time.Time, error) {
	endpoint, err := a.peerLink(ctx, name)
	if err != nil {
		return nil, err
	}
	var out Pulls
	if err := a.peerGet(ctx, name, endpoint, "/_georeg/v1/cache/pulls?repository="+url.QueryEscape(repo), 64<<20, &out); err != nil {
		return nil, err
	}
	if out.Region != name {
		return nil, fmt.Errorf("region %s answered as %q", name, out.Region)
	}
	if out.Pulls == nil {
		out.Pulls = map[digest.Digest]time.Time{}
	}
	return out.Pulls, nil
}

// peerLink is how this region reaches region name: over the inter-region
// link when it is configured, else at the endpoint its replica setting
// names.
func (a *API) peerLink(ctx context.Context, name string) (string, error) {
	all, err := a.replications(ctx)
	if err != nil {
		return "", err
	}
	endpoint := ""
	for _, rep := range all {
		if rep.Name == name {
			endpoint = rep.Endpoint
		}
	}
	if endpoint == "" {
		return "", fmt.Errorf("region %s is not a replica", name)
	}
	for _, info := range a.regions {
		if info.Name == name && info.Link != "" {
			endpoint = info.Link
		}
	}
	return endpoint, nil
}

// lines is an answer written as JSON lines, each flushed as it is
// emitted: the function emits them in turn.
type lines func(emit func(any) error) error

// streamLines writes l's lines as they come. An error after the first
// line breaks the connection: the reader must not take the lines for a
// whole answer.
func streamLines(w http.ResponseWriter, r *http.Request, l lines) {
	started := false
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	err := l(func(v any) error {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
		}
		if err := enc.Encode(v); err != nil {
			return err
		}
		_ = rc.Flush() // a writer that cannot flush sends it at the end
		return nil
	})
	if err != nil && !started {
		oe, _ := ocierr.From(err)
		ocierr.Write(w, r, oe)
		return
	}
	if err != nil {
		panic(http.ErrAbortHandler)
	}
}
