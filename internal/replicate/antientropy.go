package replicate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
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
// interval (jittered), each region compares its summary tree with each
// peer's (meta/summarytree.go): the root and its buckets first, then the
// repositories of the buckets that differ, then the state of the
// repositories that differ, and applies what the peer has that is newer,
// by the same last-writer-wins rules as the feed. Both sides do this, so
// both converge. A round costs O(differences): one request when the
// regions agree.
//
// It does not repair what the feed is applying: a round is skipped while
// the peer's feed has records this region has not fetched yet (a backlog:
// the feed will bring them), and a repository with a fetched record not
// yet applied is left for the next round.
//
//	GET /_georeg/v1/summaries?tree=1     {"region", "root", "buckets": [256 hashes], "settings": "<hash>"}
//	GET /_georeg/v1/summaries?bucket=B   {"region", "repos": {"<repo>": "<hash>"}} (bucket B's)
//	GET /_georeg/v1/summaries            {"region", "repos": {...every repository}, "settings"} (regions before the tree)
//	GET /_georeg/v1/repos/state?repo=R   {"repo", "tags": [...], "manifests": [...]}
//	GET /_georeg/v1/settings/state       {"settings": [...]}, tombstones included

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
	Repos    map[string]string `json:"repos,omitempty"`
	Settings string            `json:"settings,omitempty"` // hash of every setting, tombstones included
	// Root and Buckets: the summary tree (?tree=1); a region that answers
	// without them predates it, and is compared repository by repository.
	Root    string   `json:"root,omitempty"`
	Buckets []string `json:"buckets,omitempty"`
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
		ctx, q := req.Context(), req.URL.Query()
		if b := q.Get("bucket"); b != "" {
			n, err := strconv.Atoi(b)
			if err != nil || n < 0 || n >= meta.NumBuckets {
				return nil, ocierr.Unsupported.Withf("bucket: %q is not a bucket of the summary tree (0 to %d)", b, meta.NumBuckets-1)
			}
			repos, err := r.BucketSummaries(ctx, n)
			return Summaries{Region: r.Name(), Repos: repos}, err
		}
		_, settings, err := settingsState(ctx, r)
		if err != nil {
			return nil, err
		}
		if q.Get("tree") != "" {
			t, err := r.SummaryTree(ctx)
			return Summaries{Region: r.Name(), Root: t.Root, Buckets: t.Buckets, Settings: settings}, err
		}
		repos, err := r.Summaries(ctx)
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

// antiEntropy runs a round against s every interval, jittered by up to a
// quarter either way (the regions' rounds do not fire together), until
// ctx ends.
func (p *Replicator) antiEntropy(ctx context.Context, s *source) {
	t := time.NewTimer(jittered(p.antiEntropyInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(jittered(p.antiEntropyInterval))
		round, err := p.AntiEntropyRound(ctx, s.name)
		if ctx.Err() == nil && !round.Skipped {
			p.metrics.AntiEntropy(s.name, err, round.Differed)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			p.log.WarnContext(ctx, "anti-entropy round failed", "peer", s.name, "error", err)
		case round.Differed > 0:
			p.log.InfoContext(ctx, "anti-entropy repaired repositories", "peer", s.name, "repos", round.Differed, "applied", round.Applied)
		}
	}
}

// jittered is d moved by up to a quarter of it either way.
func jittered(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d*3/4 + rand.N(d/2+1)
}

// Round is what an anti-entropy round did.
type Round struct {
	Skipped  bool // the peer's feed had records not fetched yet: nothing compared
	Differed int  // repositories (and the settings, as one) that differed
	Applied  int  // tags, manifests and tombstones of the peer's applied here
	// Settings: the settings differed; Repos: the repositories that did.
	Settings bool
	Repos    []string
	// Busy: repositories left alone because the feed is applying them;
	// Failed: those whose repair failed (the round's error says why).
	Busy, Failed []string
}

// AntiEntropyRound compares this region's summary tree with peer's and
// applies what the peer has that is newer, in the repositories that
// differ. A round while the peer's feed has records not fetched yet does
// nothing (the feed brings them); a repository with a fetched record not
// applied yet is left for a later round.
func (p *Replicator) AntiEntropyRound(ctx context.Context, peer string) (Round, error) {
	return p.antiEntropyRound(ctx, peer, false)
}

// antiEntropyRound is AntiEntropyRound; with repair, a backlog does not
// skip it: the round that repairs what a compacted feed can no longer
// bring (follow.go).
func (p *Replicator) antiEntropyRound(ctx context.Context, peer string, repair bool) (Round, error) {
	var s *source
	for _, src := range p.peers() {
		if src.name == peer {
			s = src
		}
	}
	var round Round
	if s == nil {
		return round, fmt.Errorf("no peer %q", peer)
	}
	busy, backlog := p.tracker.applying(peer)
	if backlog && !repair {
		p.metrics.AntiEntropySkipped(peer)
		round.Skipped = true
		return round, nil
	}
	var theirs Summaries
	if err := s.getJSON(ctx, SummariesPath+"?tree=1", &theirs); err != nil {
		return round, err
	}
	var errs []error
	if _, mine, err := settingsState(ctx, p.region); err != nil {
		errs = append(errs, err)
	} else if theirs.Settings != "" && theirs.Settings != mine {
		round.Settings = true
		round.Differed++
		if err := p.repairSettings(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("settings: %w", err))
		}
	}
	repos, err := p.differingRepos(ctx, s, theirs)
	if err != nil {
		return round, errors.Join(append(errs, err)...)
	}
	for _, repo := range repos {
		if busy[repo] {
			round.Busy = append(round.Busy, repo) // the feed is applying it
			continue
		}
		round.Differed++
		round.Repos = append(round.Repos, repo)
		applied, err := p.repairRepo(ctx, s, repo)
		round.Applied += applied
		if err != nil {
			round.Failed = append(round.Failed, repo)
			errs = append(errs, fmt.Errorf("repo %s: %w", repo, err))
		}
	}
	return round, errors.Join(errs...)
}

// differingRepos walks the summary trees down from theirs (the peer's
// root and buckets) to the repositories whose summaries differ from this
// region's, those the peer holds and this region does not among them,
// sorted.
func (p *Replicator) differingRepos(ctx context.Context, s *source, theirs Summaries) ([]string, error) {
	var buckets []int
	if theirs.Buckets == nil {
		// A peer from before the tree ignores ?tree=1 and answered
		// every repository's summary at once: compare them all.
		buckets = []int{-1}
	} else {
		ours, err := p.region.SummaryTree(ctx)
		if err != nil {
			return nil, err
		}
		if ours.Root == theirs.Root || len(theirs.Buckets) != meta.NumBuckets {
			return nil, nil
		}
		for b := range meta.NumBuckets {
			if theirs.Buckets[b] != ours.Buckets[b] && theirs.Buckets[b] != "" {
				buckets = append(buckets, b)
			}
		}
	}
	var out []string
	for _, b := range buckets {
		if b >= 0 {
			theirs.Repos = nil
			if err := s.getJSON(ctx, SummariesPath+"?bucket="+strconv.Itoa(b), &theirs); err != nil {
				return nil, err
			}
		}
		ours, err := p.region.BucketSummaries(ctx, b)
		if err != nil {
			return nil, err
		}
		for repo, h := range theirs.Repos {
			if ours[repo] != h && oci.ValidateRepository(repo) == nil && (b < 0 || meta.BucketOf(repo) == b) {
				out = append(out, repo)
			}
		}
	}
	slices.Sort(out)
	return out, nil
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

// repairRepo applies the peer's newer tags, manifests and blob deletes of
// repo, and returns how many it applied.
func (p *Replicator) repairRepo(ctx context.Context, s *source, repo string) (int, error) {
	var st RepoState
	if err := s.getJSON(ctx, StatePath+"?"+url.Values{"repo": {repo}}.Encode(), &st); err != nil {
		return 0, err
	}
	r := p.region
	mine, err := r.RepoEntries(ctx, repo)
	if err != nil {
		return 0, err
	}
	applied := 0
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
			applied++
		case !m.Deleted && (!have || (l.Deleted && l.Version.Less(v))):
			err = p.ensureManifest(ctx, s, repo, m.Digest, v, nil)
			applied++
		}
		if err != nil && !errors.Is(err, errGone) && !errors.Is(err, errDeleted) {
			errs = append(errs, err)
		}
	}
	tags := map[string]hlc.Version{}
	for _, t := range mine.Tags {
		tags[t.Name] = t.Version
	}
	for _, t := range st.Tags {
		v, err := hlc.ParseVersion(t.Version)
		if err != nil || oci.ValidateTag(t.Name) != nil {
			continue
		}
		if l, have := tags[t.Name]; have && !l.Less(v) {
			if m, ok := local[t.Digest]; t.Deleted || (ok && !m.Deleted) {
				continue // the same write here, or a later one, and its manifest: nothing to apply
			}
		}
		applied++
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
		applied++
		if err := r.ApplyBlobDelete(ctx, "", 0, repo, b.Digest, v); err != nil {
			errs = append(errs, err)
		}
	}
	return applied, errors.Join(errs...)
}
