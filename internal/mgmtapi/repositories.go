package mgmtapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// Repositories, as `az acr repository` and `az acr manifest`, answered
// from this region's view. Repository names hold '/', so they travel as
// ?name= rather than in the path.
//
//	GET    /_georeg/v1/repositories                      every repository with its tag count
//	GET    /_georeg/v1/repository?name=R                 one, with its lock
//	GET    /_georeg/v1/repository/tags?name=R[&orderby=time_desc|time_asc|name]
//	GET    /_georeg/v1/repository/manifests?name=R       manifests with tags, sizes, locks
//	PATCH  /_georeg/v1/repository?name=R[&image=TAG]     {"writeEnabled", "deleteEnabled"}: lock or unlock
//	DELETE /_georeg/v1/repository?name=R                 delete every manifest and tag
//	GET|PUT /_georeg/v1/policies/retention               the retention policy
//	POST   /_georeg/v1/policies/retention/run            apply it now in this region

func (a *API) registerRepositories(mux *http.ServeMux) {
	mux.HandleFunc("GET /_georeg/v1/repositories", a.handle(a.listRepositories))
	// A token's scope map reaches these for its repositories:
	// metadata/read shows, metadata/write locks, content/delete deletes.
	mux.HandleFunc("GET /_georeg/v1/repository", a.handleRepo(auth.ActionMetadataRead, a.showRepository))
	mux.HandleFunc("GET /_georeg/v1/repository/tags", a.handleRepo(auth.ActionMetadataRead, a.repositoryTags))
	mux.HandleFunc("GET /_georeg/v1/repository/manifests", a.handleRepo(auth.ActionMetadataRead, a.repositoryManifests))
	mux.HandleFunc("PATCH /_georeg/v1/repository", a.handleRepo(auth.ActionMetadataWrite, a.lockRepository))
	mux.HandleFunc("DELETE /_georeg/v1/repository", a.handleRepo(auth.ActionDelete, a.deleteRepository))
	mux.HandleFunc("GET /_georeg/v1/locks", a.handle(a.listLocks))
	mux.HandleFunc("GET /_georeg/v1/policies/retention", a.handle(a.showRetention))
	mux.HandleFunc("PUT /_georeg/v1/policies/retention", a.handle(a.putRetention))
	mux.HandleFunc("POST /_georeg/v1/policies/retention/run", a.handle(a.runRetention))
}

// Attributes are a repository's or image's lock flags, as ACR shows them.
type Attributes struct {
	WriteEnabled  bool `json:"writeEnabled"`
	DeleteEnabled bool `json:"deleteEnabled"`
}

// RepositoryView is one repository.
type RepositoryView struct {
	Name       string     `json:"name"`
	Tags       int        `json:"tagCount"`
	Manifests  int        `json:"manifestCount"`
	Attributes Attributes `json:"changeableAttributes"`
	// Sizes: the repository's blob bytes (each blob once) in each region,
	// asked of each (5 s); Unreachable names the regions that did not
	// answer.
	Sizes       []RegionSize `json:"sizes"`
	Unreachable []string     `json:"unreachable,omitempty"`
}

// RegionSize is a repository's blob bytes in one region.
type RegionSize struct {
	Region string `json:"region"`
	Bytes  int64  `json:"bytes"`
}

// TagView is a tag with its lock flags.
type TagView struct {
	meta.TagInfo
	Attributes Attributes `json:"changeableAttributes"`
}

// ManifestView is a manifest with its lock flags (those of a locked tag
// on it).
type ManifestView struct {
	meta.ManifestInfo
	Attributes Attributes `json:"changeableAttributes"`
}

// LockBody locks or unlocks.
type LockBody struct {
	WriteEnabled  *bool `json:"writeEnabled,omitempty"`
	DeleteEnabled *bool `json:"deleteEnabled,omitempty"`
}

func (a *API) repoName(ctx context.Context, r *http.Request) (string, error) {
	name := r.URL.Query().Get("name")
	if err := oci.ValidateRepository(name); err != nil {
		return "", ocierr.NameInvalid.Withf("name=%q: %v", name, err)
	}
	ok, err := a.region.RepositoryExists(ctx, name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", ocierr.NameUnknown.Withf("repository %s is not in this region (%s); list them with georeg repository list", name, a.region.Name())
	}
	return name, nil
}

// lockTable reads every lock once, for a listing that shows the
// attributes of many tags (one query, not one per tag).
func (a *API) lockTable(ctx context.Context) (func(repo, tag string) Attributes, error) {
	settings, err := a.region.Settings(ctx, region.LockKind)
	if err != nil {
		return nil, err
	}
	locks := make(map[string]Attributes, len(settings))
	for _, s := range settings {
		var l region.Lock
		if json.Unmarshal(s.Value, &l) == nil {
			locks[s.Name] = Attributes{l.WriteEnabled, l.DeleteEnabled}
		}
	}
	return func(repo, tag string) Attributes {
		if at, ok := locks[region.LockName(repo, tag)]; ok {
			return at
		}
		return Attributes{true, true}
	}, nil
}

func (a *API) attributes(ctx context.Context, repo, tag string) (Attributes, error) {
	l, err := a.region.LockOf(ctx, repo, tag)
	if err != nil || l == nil {
		return Attributes{true, true}, err
	}
	return Attributes{l.WriteEnabled, l.DeleteEnabled}, nil
}

func (a *API) listRepositories(ctx context.Context, r *http.Request) (any, error) {
	counts, err := a.region.TagCounts(ctx, 100_000)
	if err != nil {
		return nil, err
	}
	if counts == nil {
		counts = []meta.RepoCount{}
	}
	return pageOf(r, counts)
}

func (a *API) showRepository(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.repoName(ctx, r)
	if err != nil {
		return nil, err
	}
	ms, err := a.region.ManifestList(ctx, name) // with each manifest's live tags
	if err != nil {
		return nil, err
	}
	tags := 0
	for _, m := range ms {
		tags += len(m.Tags)
	}
	attrs, err := a.attributes(ctx, name, "")
	if err != nil {
		return nil, err
	}
	v := RepositoryView{Name: name, Tags: tags, Manifests: len(ms), Attributes: attrs, Sizes: []RegionSize{}}
	rep, err := a.everyRegionsUsage(ctx, name, 0, 0, true, false)
	if err != nil {
		return nil, err
	}
	for _, u := range rep.Regions {
		if u.Repository != nil {
			v.Sizes = append(v.Sizes, RegionSize{Region: u.Region, Bytes: u.Repository.LogicalBytes})
		}
	}
	v.Unreachable = rep.Unreachable
	return v, nil
}

func (a *API) repositoryTags(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.repoName(ctx, r)
	if err != nil {
		return nil, err
	}
	tags, err := a.region.TagList(ctx, name)
	if err != nil {
		return nil, err
	}
	switch order := r.URL.Query().Get("orderby"); order {
	case "", "name":
	case "time_desc":
		sort.SliceStable(tags, func(i, j int) bool { return tags[i].Updated.After(tags[j].Updated) })
	case "time_asc":
		sort.SliceStable(tags, func(i, j int) bool { return tags[i].Updated.Before(tags[j].Updated) })
	default:
		return nil, ocierr.RequestInvalid.Withf("orderby=%q: time_desc, time_asc or name", order)
	}
	attrsOf, err := a.lockTable(ctx)
	if err != nil {
		return nil, err
	}
	out := []TagView{}
	for _, t := range tags {
		out = append(out, TagView{TagInfo: t, Attributes: attrsOf(name, t.Name)})
	}
	return pageOf(r, out)
}

func (a *API) repositoryManifests(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.repoName(ctx, r)
	if err != nil {
		return nil, err
	}
	ms, err := a.region.ManifestList(ctx, name)
	if err != nil {
		return nil, err
	}
	attrsOf, err := a.lockTable(ctx)
	if err != nil {
		return nil, err
	}
	out := []ManifestView{}
	for _, m := range ms {
		attrs := Attributes{true, true}
		for _, tag := range m.Tags {
			t := attrsOf(name, tag)
			attrs.WriteEnabled = attrs.WriteEnabled && t.WriteEnabled
			attrs.DeleteEnabled = attrs.DeleteEnabled && t.DeleteEnabled
		}
		out = append(out, ManifestView{ManifestInfo: m, Attributes: attrs})
	}
	return pageOf(r, out)
}

func (a *API) lockRepository(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.repoName(ctx, r)
	if err != nil {
		return nil, err
	}
	var body LockBody
	if err := decode(r, &body, `{"writeEnabled": false, "deleteEnabled": false}`); err != nil {
		return nil, err
	}
	tag := r.URL.Query().Get("image")
	if tag != "" {
		if err := oci.ValidateTag(tag); err != nil {
			return nil, ocierr.RequestInvalid.Withf("image=%q: %v", tag, err)
		}
	}
	cur, err := a.attributes(ctx, name, tag)
	if err != nil {
		return nil, err
	}
	if body.WriteEnabled != nil {
		cur.WriteEnabled = *body.WriteEnabled
	}
	if body.DeleteEnabled != nil {
		cur.DeleteEnabled = *body.DeleteEnabled
	}
	if _, err := a.region.SetLock(ctx, name, tag, cur.WriteEnabled, cur.DeleteEnabled); err != nil {
		return nil, err
	}
	return map[string]any{"name": name, "image": tag, "changeableAttributes": cur}, nil
}

// RepositoryDeleted answers a repository delete.
type RepositoryDeleted struct {
	Name      string   `json:"name"`
	Manifests []string `json:"manifestsDeleted"`
	Tags      []string `json:"tagsDeleted"`
}

func (a *API) deleteRepository(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.repoName(ctx, r)
	if err != nil {
		return nil, err
	}
	ms, err := a.region.ManifestList(ctx, name)
	if err != nil {
		return nil, err
	}
	// All or nothing where locks are concerned: a lock on the repository
	// or on any of its images refuses the whole delete before anything
	// goes (each delete still checks, for a lock set meanwhile).
	if err := a.region.CheckRepositoryDelete(ctx, name); err != nil {
		return nil, err
	}
	out := RepositoryDeleted{Name: name, Manifests: []string{}, Tags: []string{}}
	// Indexes before their children (a child of a live index is not
	// deleted): each pass deletes what nothing left lists, at most one
	// pass per manifest.
	pending := ms
	for pass := 0; len(pending) > 0 && pass <= len(ms); pass++ {
		var later = pending[:0:0]
		var refused error
		for _, m := range pending {
			err := a.region.DeleteManifest(ctx, name, m.Digest.String())
			if ocierr.Unsupported.Is(err) { // listed by an index this pass has not reached yet
				later, refused = append(later, m), err
				continue
			}
			if err != nil && !ocierr.ManifestUnknown.Is(err) {
				return out, err
			}
			out.Manifests = append(out.Manifests, m.Digest.String())
			out.Tags = append(out.Tags, m.Tags...)
		}
		if len(later) == len(pending) {
			return out, refused
		}
		pending = later
	}
	return out, nil
}

func (a *API) showRetention(ctx context.Context, _ *http.Request) (any, error) {
	return a.region.RetentionPolicy(ctx)
}

func (a *API) putRetention(ctx context.Context, r *http.Request) (any, error) {
	p, err := a.region.RetentionPolicy(ctx)
	if err != nil {
		return nil, err
	}
	if err := decode(r, &p, `{"status": "enabled", "days": 7, "type": "UntaggedManifests"}`); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, ocierr.RequestInvalid.Withf("retention: %v", err)
	}
	value, _ := json.Marshal(p)
	if _, err := a.region.PutSetting(ctx, region.PolicyKind, region.RetentionName, value); err != nil {
		return nil, err
	}
	return p, nil
}

func (a *API) runRetention(ctx context.Context, _ *http.Request) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	return a.region.SweepRetention(ctx)
}

// LockView is a lock as listed: "repo" or "repo:tag" and its flags.
type LockView struct {
	Name string `json:"name"`
	region.Lock
}

// listLocks serves GET /_georeg/v1/locks: every lock.
func (a *API) listLocks(ctx context.Context, _ *http.Request) (any, error) {
	settings, err := a.region.Settings(ctx, region.LockKind)
	if err != nil {
		return nil, err
	}
	out := []LockView{}
	for _, s := range settings {
		var l region.Lock
		if json.Unmarshal(s.Value, &l) == nil {
			out = append(out, LockView{Name: s.Name, Lock: l})
		}
	}
	return out, nil
}
