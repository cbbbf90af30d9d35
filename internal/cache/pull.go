package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/outbound"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/transfer"
)

// headTimeout bounds a revalidation's question to the upstream: past it
// the cached copy is served.
const headTimeout = 5 * time.Second

// Puller fetches what a cached repository lacks from its upstream, and
// keeps cached tags fresh.
type Puller struct {
	region   *region.Region
	importer *transfer.Importer
	http     http.RoundTripper
	log      *slog.Logger
	flights  singleflight.Group // one upstream fetch per image at a time on this node

	// The registry's other regions, when it has some (SetRegions): the
	// Ready ones, and how to ask one to fetch an image.
	self    string
	members func(ctx context.Context) ([]string, error)
	ask     Ask
	// For eviction (SetEviction): every region of the registry, and how
	// to ask one for its pulls of a repository.
	allMembers func(ctx context.Context) ([]string, error)
	peerPulls  func(ctx context.Context, region, repo string) (map[digest.Digest]time.Time, error)

	metrics Metrics

	warm      Warmer // pings the rules' upstreams ahead of pulls (warm.go)
	warmEvery time.Duration

	mu         sync.Mutex
	parsed     map[string]Rule // the rules of parsedFrom
	parsedFrom []meta.Setting
	checked    map[string]time.Time     // repo:tag -> when it may be asked upstream again
	failures   map[string]int           // repo:tag -> revalidations failed in a row
	cold       map[string]*coldManifest // repo|ref -> a manifest of a fetch running here (cold.go)
	passing    map[string]*passage      // repo -> the region fetching its image for a pull here
}

// Ask asks region to fetch repo's manifest ref from its upstream for the
// registry. When that region answers before the image is stored (a cold
// pull streaming) the Image carries the manifest, and done delivers the
// fetch's outcome once it is stored there (or failed); otherwise the
// image is stored there and done is nil.
type Ask func(ctx context.Context, region, repo, ref string) (img Image, done <-chan error, err error)

// New returns the puller of r, fetching with im, asking upstreams through
// rt (nil: the default transport).
func New(r *region.Region, im *transfer.Importer, rt http.RoundTripper, log *slog.Logger) *Puller {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &Puller{region: r, importer: im, http: rt, log: log, checked: map[string]time.Time{}, failures: map[string]int{},
		cold: map[string]*coldManifest{}}
}

// Metrics counts what the cache does (metrics.Node).
type Metrics interface {
	// CachePull counts a pull of a cached repository's manifest by its
	// outcome: hit (served as held), fetched (from the upstream here),
	// peer (fetched by another region for the registry), stale (served
	// held while the upstream could not be asked), error.
	CachePull(rule, outcome string)
	CacheUpstreamBytes(rule string, n int64)
}

// SetMetrics has the puller count with m.
func (p *Puller) SetMetrics(m Metrics) { p.metrics = m }

func (p *Puller) count(rule, outcome string) {
	if p.metrics != nil {
		p.metrics.CachePull(rule, outcome)
	}
	// Durable counts for georeg usage: hits served what was held.
	kind := region.TrafficCacheMisses
	if outcome == "hit" || outcome == "stale" {
		kind = region.TrafficCacheHits
	}
	p.region.CountTraffic(kind, rule, 1)
}

// RuleOf names the cache rule repo falls under (ok false: none), from the
// rules as read lately: the API counts a cached repository's blob bytes
// served under it.
func (p *Puller) RuleOf(ctx context.Context, repo string) (string, bool) {
	rules, err := p.Rules(ctx, false)
	if err != nil || len(rules) == 0 {
		return "", false
	}
	m, ok := Matched(rules, repo)
	return m.Rule, ok
}

// OnDemand reports whether repo falls under a rule with --replicate
// on-demand (region.OnDemandFunc), from the rules as read lately.
func (p *Puller) OnDemand(ctx context.Context, repo string) bool {
	m, ok := p.matched(ctx, repo)
	return ok && m.OnDemand
}

// SetRegions has the puller leave each image's upstream fetch to one
// region (Fetcher) of members, asked with ask; self is this region.
func (p *Puller) SetRegions(self string, members func(ctx context.Context) ([]string, error), ask Ask) {
	p.self, p.members, p.ask = self, members, ask
}

// Rules returns the cache rules, by name: as the region read them lately
// (region.RecentSettings: a manifest GET of a tag consults them), or read
// now with fresh (a miss, which is rare and may follow a rule just made).
func (p *Puller) Rules(ctx context.Context, fresh bool) (map[string]Rule, error) {
	read := p.region.RecentSettings
	if fresh {
		read = p.region.Settings
	}
	ss, err := read(ctx, RuleKind)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// The region hands out the same list until it reads again: parse it
	// once, not per pull.
	if len(ss) == len(p.parsedFrom) && (len(ss) == 0 || &ss[0] == &p.parsedFrom[0]) && p.parsed != nil {
		return p.parsed, nil
	}
	rules := map[string]Rule{}
	for _, s := range ss {
		var r Rule
		if json.Unmarshal(s.Value, &r) == nil {
			rules[s.Name] = r
		}
	}
	p.parsed, p.parsedFrom = rules, ss
	return rules, nil
}

// matched is the rule repo falls under, from the rules as read lately.
func (p *Puller) matched(ctx context.Context, repo string) (Match, bool) {
	rules, err := p.Rules(ctx, false)
	if err != nil {
		return Match{}, false
	}
	return Matched(rules, repo)
}

// Mirror returns the repository a mirror request for repo of upstream
// registry ns maps to (containerd's hosts.toml mirrors send ?ns=).
func (p *Puller) Mirror(ctx context.Context, ns, repo string) (string, bool) {
	rules, err := p.Rules(ctx, false)
	if err != nil {
		return "", false
	}
	return Mirrored(rules, ns, repo)
}

// upstreamOf resolves repo's ref to its rule's upstream reference and
// credentials; ok false when no rule covers repo.
func (p *Puller) upstreamOf(ctx context.Context, repo, ref string, fresh bool) (Match, name.Reference, authn.Authenticator, bool, error) {
	rules, err := p.Rules(ctx, fresh)
	if err != nil || len(rules) == 0 {
		return Match{}, nil, nil, false, err
	}
	m, ok := Matched(rules, repo)
	if !ok {
		return m, nil, nil, false, nil
	}
	auth := authn.Anonymous
	if m.Cred != "" {
		s, err := p.region.Setting(ctx, CredentialSetKind, m.Cred)
		if err != nil {
			return m, nil, nil, true, ocierr.Unavailable.Withf("cache rule %s names credential set %s, which this region does not have: %v", m.Rule, m.Cred, err)
		}
		var c CredentialSet
		if err := json.Unmarshal(s.Value, &c); err != nil {
			return m, nil, nil, true, fmt.Errorf("credential set %s: %w", m.Cred, err)
		}
		auth = &authn.Basic{Username: c.Username, Password: c.Password}
	}
	upstream, opts := m.Upstream, []name.Option{name.StrictValidation}
	if u, insecure := strings.CutPrefix(upstream, "http://"); insecure {
		upstream, opts = u, append(opts, name.Insecure)
	}
	sep := ":"
	if oci.IsDigest(ref) {
		sep = "@"
	}
	src, err := name.ParseReference(upstream+sep+ref, opts...)
	if err != nil {
		return m, nil, nil, true, ocierr.ManifestUnknown.Withf("cache rule %s maps %s:%s to %s%s%s, which is not a valid reference: %v", m.Rule, repo, ref, upstream, sep, ref, err)
	}
	return m, src, auth, true, nil
}

// Ensure makes repo's manifest ref (a tag or digest), which no region
// holds, come from the upstream of the rule repo falls under; ok false
// when repo falls under no rule (nothing was asked). One region fetches
// each image for the whole registry (Fetcher): when that is this region,
// or the one chosen cannot be asked, the image is fetched here;
// otherwise the chosen region fetches it, and Image.Via names it. While
// the image is not stored whole yet, Image carries its manifest to
// serve (cold.go); else the caller reads the image from its store, or
// through from Via. Concurrent pulls of one image on this node cause one
// upstream fetch or one ask.
func (p *Puller) Ensure(ctx context.Context, repo, ref string) (img Image, ok bool, err error) {
	if _, _, _, ok, err := p.upstreamOf(ctx, repo, ref, true); !ok || err != nil {
		return Image{}, ok, err
	}
	fetcher := p.Passing(repo) // the region fetching this image's index for a pull here
	if fetcher == "" {
		fetcher = p.fetcher(ctx, repo, ref)
	}
	if p.fetching(repo, ref) {
		// Part of an image this region is fetching (its digest after a
		// HEAD by tag, as containerd resolves; a platform of an index):
		// not a new image for the region hashing names.
		fetcher = p.self
	}
	if fetcher != "" && fetcher != p.self {
		v, err, _ := p.flights.Do("ask|"+repo+"|"+ref, func() (any, error) {
			// The ask outlives the pull (it may hand on the image before
			// it is stored, and then tell when it is), not the node.
			img, done, err := p.ask(p.importer.NodeContext(), fetcher, repo, ref)
			if err == nil && img.Payload != nil && done != nil {
				p.pass(repo, fetcher, done)
			}
			return img, err
		})
		if err == nil {
			if m, ok := p.matched(ctx, repo); ok {
				p.count(m.Rule, "peer")
				// The fetcher just asked the upstream: the tag is as fresh
				// as one fetched here, not due for revalidation at once.
				if !oci.IsDigest(ref) {
					p.mark(repo, ref, m.Interval, true)
				}
			}
			img := v.(Image)
			img.Via = fetcher
			return img, true, nil
		}
		var oe *ocierr.Error
		if errors.As(err, &oe) && (oe.Code == ocierr.ManifestUnknown || oe.Code == ocierr.Denied) {
			return Image{}, true, err // the upstream's answer, as that region got it
		}
		p.log.WarnContext(ctx, "the region chosen to fetch could not be asked: fetching here", "region", fetcher, "repository", repo, "reference", ref, "error", err)
	}
	img, _, err = p.EnsureHere(ctx, repo, ref)
	return img, true, err
}

// EnsureHere fetches repo's manifest ref from its upstream into this
// region, whichever region Fetcher picks (another region asked this one),
// unless this region holds it already or is fetching it. It answers as
// soon as the manifest arrived (Image.Payload set while the image is
// not stored whole); stored waits until it is stored, and returns its
// digest.
func (p *Puller) EnsureHere(ctx context.Context, repo, ref string) (img Image, stored func(context.Context) (digest.Digest, error), err error) {
	m, src, auth, ok, err := p.upstreamOf(ctx, repo, ref, true)
	if err != nil {
		return Image{}, nil, err
	}
	if !ok {
		return Image{}, nil, ocierr.NameUnknown.Withf("no cache rule covers repository %s in region %s", repo, p.region.Name())
	}
	if d, held := p.held(ctx, repo, ref); held {
		return Image{Digest: d}, func(context.Context) (digest.Digest, error) { return d, nil }, nil
	}
	cm := p.coldFetch(ctx, m, src, repo, ref, auth)
	img, err = cm.image(ctx)
	if err != nil {
		return Image{}, nil, err
	}
	if !oci.IsDigest(ref) {
		p.mark(repo, ref, m.Interval, true)
	}
	return img, cm.stored, nil
}

// held returns the digest of repo's manifest ref when this region holds
// it live.
func (p *Puller) held(ctx context.Context, repo, ref string) (digest.Digest, bool) {
	if oci.IsDigest(ref) {
		d := digest.Digest(ref)
		ok, err := p.region.HasManifest(ctx, repo, d)
		return d, err == nil && ok
	}
	d, err := p.region.ResolveTag(ctx, repo, ref)
	return d, err == nil
}

// fetcher is the region that fetches repo:ref for the registry, "" when
// this region is alone (or cannot tell).
func (p *Puller) fetcher(ctx context.Context, repo, ref string) string {
	if p.members == nil || p.ask == nil {
		return ""
	}
	regions, err := p.members(ctx)
	if err != nil || len(regions) < 2 {
		return ""
	}
	return Fetcher(regions, repo+"|"+ref)
}

// mark records a revalidation of repo:tag: the next one is due after the
// rule's interval, or, after a failure, after a backoff that doubles
// from 5 s up to the interval and waits at least the retryAfter the
// upstream asked for (nextCheck).
func (p *Puller) mark(repo, tag string, interval time.Duration, ok bool, retryAfter ...time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := repo + ":" + tag
	if ok {
		delete(p.failures, key)
		p.checked[key] = nextCheck(time.Now(), interval, 0, 0)
		return
	}
	p.failures[key]++
	var ra time.Duration
	for _, d := range retryAfter {
		ra = max(ra, d)
	}
	p.checked[key] = nextCheck(time.Now(), interval, p.failures[key], ra)
}

// due reports whether repo:tag is to be asked upstream now.
func (p *Puller) due(repo, tag string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	next, ok := p.checked[repo+":"+tag]
	return !ok || !time.Now().Before(next)
}

// Revalidate checks cached tag repo:tag, held here at digest have, against
// its upstream once its rule's interval has passed since the last check
// (or at once with force): a tag moved upstream is fetched and moved here
// as a push, which replicates. When the upstream cannot answer (429, 5xx,
// unreachable, slower than 5 s) the cached copy stays: stale is true, and
// the check is tried again after a backoff. ok false when no rule covers
// repo.
func (p *Puller) Revalidate(ctx context.Context, repo, tag string, have digest.Digest, force bool) (d digest.Digest, stale, ok bool, err error) {
	if !force && !p.due(repo, tag) {
		if m, ok := p.matched(ctx, repo); ok {
			p.count(m.Rule, "hit")
		}
		return have, false, true, nil
	}
	m, src, auth, ok, err := p.upstreamOf(ctx, repo, tag, force)
	if !ok || err != nil {
		return have, false, ok, err
	}
	hctx, cancel := context.WithTimeout(ctx, headTimeout)
	// One try: the cached copy is served meanwhile, and the next try
	// follows the backoff and the upstream's Retry-After.
	rec := &retryAfterRecorder{next: p.http}
	desc, herr := remote.Head(src, remote.WithContext(hctx), remote.WithAuth(auth), remote.WithTransport(rec),
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Second, Factor: 1, Steps: 1}))
	cancel()
	if herr != nil {
		p.mark(repo, tag, m.Interval, false, rec.asked())
		p.log.WarnContext(ctx, "cached tag not revalidated: serving the cached copy", "rule", m.Rule, "repository", repo, "tag", tag, "error", herr)
		p.count(m.Rule, "stale")
		if force {
			return have, true, true, upstreamError(m, src, herr)
		}
		return have, true, true, nil
	}
	if desc.Digest.String() == have.String() {
		p.mark(repo, tag, m.Interval, true)
		p.count(m.Rule, "hit")
		return have, false, true, nil
	}
	d, err = p.coldFetch(ctx, m, src, repo, tag, auth).stored(ctx)
	if err != nil {
		p.mark(repo, tag, m.Interval, false)
		if force {
			return have, true, true, err
		}
		return have, true, true, nil
	}
	p.mark(repo, tag, m.Interval, true)
	return d, false, true, nil
}

// upstreamError says what the upstream answered, naming the rule.
func upstreamError(m Match, src name.Reference, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusNotFound:
			return ocierr.ManifestUnknown.Withf("cache rule %s: %s is not in the upstream: %s", m.Rule, src, outbound.Trim(terr.Error()))
		case http.StatusUnauthorized, http.StatusForbidden:
			return ocierr.Denied.Withf("cache rule %s: the upstream refused %s (credential set %q): %s", m.Rule, src, m.Cred, outbound.Trim(terr.Error()))
		}
	}
	var oe *ocierr.Error
	if errors.As(err, &oe) {
		return err // the region's own answer (a lock, a quota, space)
	}
	return ocierr.Unavailable.Withf("cache rule %s: asking the upstream for %s failed: %s", m.Rule, src, outbound.Trim(err.Error()))
}
