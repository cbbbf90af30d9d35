package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/webhook"
)

// Eviction: a rule with EvictUntouched evicts a cached image that no
// region pulled for that long. Each region notes the pulls of cached
// repositories' manifests (region.NotePulled, recorded every 10 s); the
// region that originated a cached image (the one that fetched it: it
// sweeps it, as retention does) asks every other region for its pulls
// of the repository and deletes, as a client's delete, what nobody used.
// A region that cannot be asked keeps the repository as it is for the
// round. A delete evicts: the next pull fetches the image again.

// Held is a manifest of a cached repository as eviction sees it.
type Held struct {
	Digest   digest.Digest
	Stored   time.Time       // when this region stored it
	Children []digest.Digest // an index's manifests
	Subject  digest.Digest   // a referrer's subject ("" for none)
	Sweep    bool            // this region sweeps it (it originated it)
}

// Untouched returns the manifests of held to evict at now, indexes
// first: those this region sweeps whose last use, in any region
// (pulled: the latest pull everywhere), and whose storing are both more
// than after ago. An index is used when it or any of its manifests was
// pulled (a platform pulled by digest); a kept index keeps its manifests;
// a referrer (a signature, an SBOM) goes with its subject while the
// subject is held; a manifest this region does not sweep is kept. Pure.
func Untouched(held []Held, pulled map[digest.Digest]time.Time, now time.Time, after time.Duration) []digest.Digest {
	cutoff := now.Add(-after)
	byDigest := make(map[digest.Digest]Held, len(held))
	for _, h := range held {
		byDigest[h.Digest] = h
	}
	last := func(h Held) time.Time {
		t := h.Stored
		if p := pulled[h.Digest]; p.After(t) {
			t = p
		}
		return t
	}
	kept := map[digest.Digest]bool{}
	for _, h := range held {
		use := last(h)
		for _, c := range h.Children {
			if ch, ok := byDigest[c]; ok && last(ch).After(use) {
				use = last(ch)
			}
		}
		_, subjectHeld := byDigest[h.Subject]
		if !h.Sweep || (use.After(cutoff) && !(h.Subject != "" && subjectHeld)) {
			kept[h.Digest] = true
		}
	}
	// What is kept keeps: an index its manifests, a subject its
	// referrers, until nothing changes (each pass keeps one more at
	// least, so at most len(held) passes).
	for range len(held) + 1 {
		changed := false
		for _, h := range held {
			if kept[h.Digest] {
				for _, c := range h.Children {
					if _, ok := byDigest[c]; ok && !kept[c] {
						kept[c], changed = true, true
					}
				}
				continue
			}
			if h.Subject != "" && kept[h.Subject] {
				kept[h.Digest], changed = true, true
			}
		}
		if !changed {
			break
		}
	}
	var indexes, others []digest.Digest
	for _, h := range held {
		switch {
		case kept[h.Digest]:
		case len(h.Children) > 0:
			indexes = append(indexes, h.Digest)
		default:
			others = append(others, h.Digest)
		}
	}
	slices.Sort(indexes)
	slices.Sort(others)
	return append(indexes, others...)
}

// SetEviction has the puller ask region name for its pulls of repo's
// manifests with pulls, among members (every region of the registry).
func (p *Puller) SetEviction(members func(ctx context.Context) ([]string, error),
	pulls func(ctx context.Context, region, repo string) (map[digest.Digest]time.Time, error)) {
	p.allMembers, p.peerPulls = members, pulls
}

// SweepUntouched evicts, under every rule with EvictUntouched, the
// cached images this region sweeps that no region pulled for the rule's
// period (Untouched). It returns the deletes made (repo@digest) and how
// many a lock kept (region.Evictor).
func (p *Puller) SweepUntouched(ctx context.Context) ([]string, int, error) {
	evicted, kept := []string{}, 0
	rules, err := p.Rules(ctx, true)
	if err != nil {
		return evicted, 0, err
	}
	evicting := false
	for _, r := range rules {
		evicting = evicting || r.EvictAfter() > 0
	}
	if !evicting {
		return evicted, 0, nil
	}
	sweeps, err := p.region.Sweeps(ctx)
	if err != nil {
		return evicted, 0, err
	}
	var others []string
	if p.allMembers != nil {
		all, err := p.allMembers(ctx)
		if err != nil {
			return evicted, 0, err
		}
		for _, m := range all {
			if m != p.region.Name() {
				others = append(others, m)
			}
		}
	}
	last := ""
	for range 1 << 20 { // pages of 1,000 repositories
		repos, err := p.region.Repositories(ctx, last, 1000)
		if err != nil {
			return evicted, kept, err
		}
		for _, repo := range repos {
			m, ok := Matched(rules, repo)
			if !ok || rules[m.Rule].EvictAfter() == 0 {
				continue
			}
			ds, err := p.untouched(ctx, repo, rules[m.Rule].EvictAfter(), sweeps, others)
			if err != nil {
				p.log.WarnContext(ctx, "cache eviction skipped a repository this round", "rule", m.Rule, "repository", repo, "error", err)
				continue
			}
			dctx := webhook.WithRequest(ctx, &webhook.Request{Method: "EVICT", Actor: "cache-rule " + m.Rule})
			for _, d := range ds {
				err := p.region.DeleteManifest(dctx, repo, d.String())
				switch {
				case err == nil:
					evicted = append(evicted, repo+"@"+d.String())
					if ferr := p.region.ForgetPulled(ctx, repo, d); ferr != nil {
						p.log.WarnContext(ctx, "forget an evicted image's pulls", "repository", repo, "digest", d, "error", ferr)
					}
				case ocierr.Denied.Is(err), ocierr.Unsupported.Is(err): // locked, or listed by an index live meanwhile
					kept++
				case ocierr.ManifestUnknown.Is(err): // deleted meanwhile
				default:
					return evicted, kept, err
				}
			}
		}
		if len(repos) < 1000 {
			break
		}
		last = repos[len(repos)-1]
	}
	if len(evicted) > 0 {
		p.log.InfoContext(ctx, "cache evicted images no region pulled for their rule's period", "count", len(evicted))
	}
	return evicted, kept, nil
}

// untouched is Untouched for repo, with the pulls of this region and of
// every other (others): an error when one cannot say.
func (p *Puller) untouched(ctx context.Context, repo string, after time.Duration, sweeps func(string) bool, others []string) ([]digest.Digest, error) {
	ms, err := p.region.ManifestList(ctx, repo)
	if err != nil {
		return nil, err
	}
	held := make([]Held, 0, len(ms))
	mine := false
	for _, m := range ms {
		held = append(held, heldOf(m, sweeps(m.Origin)))
		mine = mine || sweeps(m.Origin)
	}
	if !mine {
		return nil, nil // nothing here to sweep: no need to ask anyone
	}
	pulled, err := p.region.LastPulled(ctx, repo)
	if err != nil {
		return nil, err
	}
	for _, other := range others {
		if p.peerPulls == nil {
			return nil, errors.New("no way to ask the other regions for their pulls")
		}
		theirs, err := p.peerPulls(ctx, other, repo)
		if err != nil {
			return nil, fmt.Errorf("region %s could not say when it last pulled %s: %w", other, repo, err)
		}
		for d, at := range theirs {
			if at.After(pulled[d]) {
				pulled[d] = at
			}
		}
	}
	return Untouched(held, pulled, time.Now(), after), nil
}

// heldOf is m as eviction sees it.
func heldOf(m meta.ManifestInfo, sweep bool) Held {
	h := Held{Digest: m.Digest, Stored: m.Created, Subject: digest.Digest(m.Subject), Sweep: sweep}
	if oci.IsIndex(m.MediaType) {
		if parsed, err := oci.ParseManifest(m.MediaType, m.Payload); err == nil {
			for _, c := range parsed.Manifests {
				h.Children = append(h.Children, c.Digest)
			}
		}
	}
	return h
}
