package replicate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// Anti-entropy heals what the feeds missed (a feed truncated while a region
// was away, a record removed by hand, a restored backup, a bug). Every
// interval, each region asks each peer for a hash per repository of its
// tags and manifests, and for every repository whose hash differs, for its
// whole state; then it applies what the peer has that is newer, by the same
// last-writer-wins rules as the feed. Both sides do this, so both converge.
//
//	GET /_georeg/v1/summaries          {"region", "repos": {"<repo>": "<hash>"}, "settings": "<hash>"}
//	GET /_georeg/v1/repos/state?repo=R {"repo", "tags": [...], "manifests": [...]}
//	GET /_georeg/v1/settings/state     {"settings": [...]}, tombstones included

// Paths of the anti-entropy endpoints.
const (
	SummariesPath     = "/_georeg/v1/summaries"
	StatePath         = "/_georeg/v1/repos/state"
	SettingsStatePath = "/_georeg/v1/settings/state"
	// RetirePath asks a region, deleted with --purge, to delete its data
	// and replicate with nobody from then on.
	RetirePath = "/_georeg/v1/retire"
)

// Summaries is the answer of SummariesPath.
type Summaries struct {
	Region   string            `json:"region"`
	Repos    map[string]string `json:"repos"`
	Settings string            `json:"settings"` // hash of every setting, tombstones included
}

// SettingState is a setting or tombstone on the wire.
type SettingState struct {
	Kind    string          `json:"kind"`
	Name    string          `json:"name"`
	Value   json.RawMessage `json:"value,omitempty"`
	Version string          `json:"version"`
	Deleted bool            `json:"deleted,omitempty"`
}

// settingsState returns every setting with tombstones, and their hash.
func settingsState(ctx context.Context, r *region.Region) ([]SettingState, string, error) {
	all, err := r.AllSettings(ctx)
	if err != nil {
		return nil, "", err
	}
	out := make([]SettingState, 0, len(all))
	h := sha256.New()
	for _, s := range all {
		st := SettingState{Kind: s.Kind, Name: s.Name, Version: s.Version.String(), Deleted: s.Deleted}
		if !s.Deleted {
			st.Value = s.Value
		}
		fmt.Fprintf(h, "%s %s %s %t %s\n", st.Kind, st.Name, st.Version, st.Deleted, st.Value)
		out = append(out, st)
	}
	return out, hex.EncodeToString(h.Sum(nil)), nil
}

// RepoState is the answer of StatePath.
type RepoState struct {
	Repo      string          `json:"repo"`
	Tags      []TagState      `json:"tags"`
	Manifests []ManifestState `json:"manifests"`
	// Blobs are the repository's blob deletes (live links are not
	// compared: garbage collection and read-through make them differ
	// between regions by design).
	Blobs []BlobState `json:"blobs"`
}

// BlobState is a blob delete on the wire.
type BlobState struct {
	Digest  digest.Digest `json:"digest"`
	Version string        `json:"version"`
}

// TagState is a tag's value or tombstone on the wire.
type TagState struct {
	Name    string        `json:"name"`
	Digest  digest.Digest `json:"digest,omitempty"`
	Version string        `json:"version"`
	Deleted bool          `json:"deleted,omitempty"`
}

// ManifestState is a manifest or tombstone on the wire.
type ManifestState struct {
	Digest  digest.Digest `json:"digest"`
	Version string        `json:"version"`
	Deleted bool          `json:"deleted,omitempty"`
}

// Register adds the anti-entropy endpoints, for requests authorized
// admits (a member region's token: peerauth.Verifier.Authorized).
func Register(mux *http.ServeMux, r *region.Region, authorized func(*http.Request) bool) {
	auth := func(h func(*http.Request) (any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			if !authorized(req) {
				ocierr.Write(w, req, ocierr.Unauthorized.Withf("anti-entropy is for member regions: send a region token (peerauth)"))
				return
			}
			body, err := h(req)
			if err != nil {
				oe, _ := ocierr.From(err)
				ocierr.Write(w, req, oe)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(body)
		}
	}
	mux.HandleFunc("GET "+SummariesPath, auth(func(req *http.Request) (any, error) {
		repos, err := r.Summaries(req.Context())
		if err != nil {
			return nil, err
		}
		_, settings, err := settingsState(req.Context(), r)
		return Summaries{Region: r.Name(), Repos: repos, Settings: settings}, err
	}))
	mux.HandleFunc("POST "+RetirePath, auth(func(req *http.Request) (any, error) {
		return map[string]string{"retired": r.Name()}, r.Retire(req.Context())
	}))
	mux.HandleFunc("GET "+SettingsStatePath, auth(func(req *http.Request) (any, error) {
		all, _, err := settingsState(req.Context(), r)
		return struct {
			Settings []SettingState `json:"settings"`
		}{all}, err
	}))
	mux.HandleFunc("GET "+StatePath, auth(func(req *http.Request) (any, error) {
		repo := req.URL.Query().Get("repo")
		if err := oci.ValidateRepository(repo); err != nil {
			return nil, ocierr.NameInvalid.Withf("repo: %v", err)
		}
		entries, err := r.RepoEntries(req.Context(), repo)
		st := RepoState{Repo: repo, Tags: []TagState{}, Manifests: []ManifestState{}, Blobs: []BlobState{}}
		for _, t := range entries.Tags {
			st.Tags = append(st.Tags, TagState{Name: t.Name, Digest: t.Digest, Version: t.Version.String(), Deleted: t.Deleted})
		}
		for _, m := range entries.Manifests {
			st.Manifests = append(st.Manifests, ManifestState{Digest: m.Digest, Version: m.Version.String(), Deleted: m.Deleted})
		}
		for _, b := range entries.Blobs {
			st.Blobs = append(st.Blobs, BlobState{Digest: b.Digest, Version: b.Version.String()})
		}
		return st, err
	}))
}

// RetireRegion asks region name at endpoint to delete its data and stop
// replicating (replication delete --purge).
func (p *Replicator) RetireRegion(ctx context.Context, name, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(endpoint, "/")+RetirePath, nil)
	if err != nil {
		return err
	}
	if err := p.signer.Authorize(ctx, req, name); err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ocierr.Read(resp)
	}
	return nil
}

func (s *source) getJSON(ctx context.Context, path string, out any) error {
	resp, err := s.get(ctx, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(out)
}

// antiEntropy runs a round against s every interval until ctx ends.
func (p *Replicator) antiEntropy(ctx context.Context, s *source) {
	t := time.NewTicker(p.antiEntropyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		repaired, err := p.AntiEntropyRound(ctx, s.name)
		if ctx.Err() == nil {
			p.metrics.AntiEntropy(s.name, err, repaired)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			p.log.WarnContext(ctx, "anti-entropy round failed", "peer", s.name, "error", err)
		case repaired > 0:
			p.log.InfoContext(ctx, "anti-entropy repaired repositories", "peer", s.name, "repos", repaired)
		}
	}
}

// AntiEntropyRound compares every repository with peer and applies what
// the peer has that is newer. It returns how many repositories differed.
func (p *Replicator) AntiEntropyRound(ctx context.Context, peer string) (int, error) {
	var s *source
	for _, src := range p.peers() {
		if src.name == peer {
			s = src
		}
	}
	if s == nil {
		return 0, fmt.Errorf("no peer %q", peer)
	}
	var theirs Summaries
	if err := s.getJSON(ctx, SummariesPath, &theirs); err != nil {
		return 0, err
	}
	ours, err := p.region.Summaries(ctx)
	if err != nil {
		return 0, err
	}
	differ := 0
	var errs []error
	if _, mine, err := settingsState(ctx, p.region); err != nil {
		errs = append(errs, err)
	} else if theirs.Settings != "" && theirs.Settings != mine {
		differ++
		if err := p.repairSettings(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("settings: %w", err))
		}
	}
	for repo, h := range theirs.Repos {
		if ours[repo] == h || oci.ValidateRepository(repo) != nil {
			continue
		}
		differ++
		if err := p.repairRepo(ctx, s, repo); err != nil {
			errs = append(errs, fmt.Errorf("repo %s: %w", repo, err))
		}
	}
	return differ, errors.Join(errs...)
}

// repairSettings applies the peer's settings, each last-writer-wins.
func (p *Replicator) repairSettings(ctx context.Context, s *source) error {
	var st struct {
		Settings []SettingState `json:"settings"`
	}
	if err := s.getJSON(ctx, SettingsStatePath, &st); err != nil {
		return err
	}
	var errs []error
	for _, e := range st.Settings {
		v, err := hlc.ParseVersion(e.Version)
		if err != nil || e.Kind == "" || e.Name == "" || (!e.Deleted && !json.Valid(e.Value)) {
			continue
		}
		err = p.region.ApplySetting(ctx, "", 0, meta.Setting{Kind: e.Kind, Name: e.Name, Value: e.Value, Version: v, Deleted: e.Deleted})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// repairRepo applies the peer's newer tags and manifests of repo.
func (p *Replicator) repairRepo(ctx context.Context, s *source, repo string) error {
	var st RepoState
	if err := s.getJSON(ctx, StatePath+"?"+url.Values{"repo": {repo}}.Encode(), &st); err != nil {
		return err
	}
	r := p.region
	mine, err := r.RepoEntries(ctx, repo)
	if err != nil {
		return err
	}
	local := map[digest.Digest]meta.ManifestEntry{}
	for _, m := range mine.Manifests {
		local[m.Digest] = m
	}
	var errs []error
	for _, m := range st.Manifests {
		v, err := hlc.ParseVersion(m.Version)
		if err != nil || m.Digest.Validate() != nil {
			continue
		}
		l, have := local[m.Digest]
		switch {
		case m.Deleted && (!have || !l.Deleted || l.Version.Less(v)):
			err = r.ApplyManifestDelete(ctx, "", 0, repo, m.Digest, v)
		case !m.Deleted && (!have || (l.Deleted && l.Version.Less(v))):
			err = p.ensureManifest(ctx, s, repo, m.Digest, v, nil)
		}
		if err != nil && !errors.Is(err, errGone) && !errors.Is(err, errDeleted) {
			errs = append(errs, err)
		}
	}
	for _, t := range st.Tags {
		v, err := hlc.ParseVersion(t.Version)
		if err != nil || oci.ValidateTag(t.Name) != nil {
			continue
		}
		if t.Deleted {
			err = r.ApplyTagDelete(ctx, "", 0, repo, t.Name, v)
		} else if err = p.ensureManifest(ctx, s, repo, t.Digest, hlc.Version{}, nil); err == nil || errors.Is(err, errGone) || errors.Is(err, errDeleted) {
			err = r.ApplyTag(ctx, "", 0, repo, t.Name, t.Digest, v, err == nil)
		}
		if err != nil && !errors.Is(err, errGone) {
			errs = append(errs, err)
		}
	}
	tombs := map[digest.Digest]hlc.Version{}
	for _, b := range mine.Blobs {
		tombs[b.Digest] = b.Version
	}
	for _, b := range st.Blobs {
		v, err := hlc.ParseVersion(b.Version)
		if err != nil || b.Digest.Validate() != nil {
			continue
		}
		if l, have := tombs[b.Digest]; have && !l.Less(v) {
			continue
		}
		if err := r.ApplyBlobDelete(ctx, "", 0, repo, b.Digest, v); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
