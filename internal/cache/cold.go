package cache

import (
	"context"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/webhook"
)

// A cold pull streams (docs/cache.md, "Cold pulls stream"): the region
// fetching an image from its upstream answers the pull with the manifest
// as soon as it arrived and was verified, before the image is stored;
// the manifest's blobs are offered meanwhile (region.OfferBlob), so the
// client's blob GETs, here or through a peer region, fetch them at once
// or join the fetch running, and stream them as they land. The image is
// stored, and replicated, only whole: what a region serves from its
// store is never partial. Until then the manifest is the upstream's
// answer relayed, not this registry's content: it is in no tag listing
// and no region's status.

// Image is what Ensure and EnsureHere answer for a manifest no region
// held.
type Image struct {
	Digest digest.Digest
	// Via names the region that fetches it for the registry; "" when it
	// is fetched, or held, here.
	Via string
	// MediaType and Payload are set while the image is not stored whole
	// yet (its fetch still runs, here or in Via): the manifest as the
	// upstream sent it, verified by its digest, for the caller to serve
	// as is.
	MediaType string
	Payload   []byte
}

// coldManifest is a manifest of an image being fetched here: ready
// closes when it arrived (d, mediaType, payload) or the fetch failed
// before it (err).
type coldManifest struct {
	ready     chan struct{}
	resolved  bool // under Puller.mu
	job       *coldJob
	d         digest.Digest
	mediaType string
	payload   []byte
	err       error
}

// coldJob is one fetch from the upstream: done closes when the image is
// stored whole (err nil) or the fetch failed.
type coldJob struct {
	done chan struct{}
	err  error
}

// image waits for cm: the image to serve while it is fetched.
func (cm *coldManifest) image(ctx context.Context) (Image, error) {
	select {
	case <-cm.ready:
	case <-ctx.Done():
		return Image{}, ctx.Err()
	}
	if cm.err != nil {
		return Image{}, cm.err
	}
	return Image{Digest: cm.d, MediaType: cm.mediaType, Payload: cm.payload}, nil
}

// stored waits until cm's image is stored whole, and returns its digest.
func (cm *coldManifest) stored(ctx context.Context) (digest.Digest, error) {
	if _, err := cm.image(ctx); err != nil {
		return "", err
	}
	select {
	case <-cm.job.done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return cm.d, cm.job.err
}

// coldFetch returns repo's manifest ref as a fetch running here has it,
// starting that fetch when none has: once per image on this node, as
// the whole image (every platform, every blob, the referrers) stored
// only whole (transfer.Importer.Fetch). The fetch outlives the caller.
func (p *Puller) coldFetch(ctx context.Context, m Match, src name.Reference, repo, ref string, auth authn.Authenticator) *coldManifest {
	key := repo + "|" + ref
	p.mu.Lock()
	if cm, ok := p.cold[key]; ok {
		p.mu.Unlock()
		return cm
	}
	job := &coldJob{done: make(chan struct{})}
	top := &coldManifest{ready: make(chan struct{}), job: job}
	p.cold[key] = top
	owned := []string{key} // the entries this fetch made: removed when it ends
	p.mu.Unlock()
	tag := ref
	if oci.IsDigest(ref) {
		tag = ""
	}
	resolve := func(cm *coldManifest, d digest.Digest, mediaType string, raw []byte, err error) {
		if cm == nil || cm.job != job || cm.resolved {
			return
		}
		cm.resolved, cm.d, cm.mediaType, cm.payload, cm.err = true, d, mediaType, raw, err
		close(cm.ready)
	}
	first := true
	onManifest := func(d digest.Digest, mediaType string, raw []byte, children []digest.Digest) {
		p.mu.Lock()
		defer p.mu.Unlock()
		// The platforms it lists are asked for next: they wait for this
		// fetch rather than starting their own.
		for _, c := range children {
			if k := repo + "|" + c.String(); p.cold[k] == nil {
				p.cold[k] = &coldManifest{ready: make(chan struct{}), job: job}
				owned = append(owned, k)
			}
		}
		cm := p.cold[repo+"|"+d.String()]
		if first {
			first, cm = false, top
			if k := repo + "|" + d.String(); p.cold[k] == nil {
				p.cold[k] = top
				owned = append(owned, k)
			}
		}
		resolve(cm, d, mediaType, raw, nil)
	}
	// finish ends the fetch: the manifests it made entries for and did
	// not fetch fail with err (or are not in the image), and the entries
	// go (the image is stored, or not).
	finish := func(err error) {
		p.mu.Lock()
		for _, k := range owned {
			cm := p.cold[k]
			missing := err
			if missing == nil {
				missing = ocierr.ManifestUnknown.Withf("%s: not in the image fetched for %s:%s", k, repo, ref)
			}
			resolve(cm, "", "", nil, missing)
			if cm != nil && cm.job == job {
				delete(p.cold, k)
			}
		}
		p.mu.Unlock()
		job.err = err
		close(job.done)
	}
	// The fetch outlives the pull that started it (others wait on it),
	// not the node.
	fetch := func(nodeCtx context.Context) {
		fctx := webhook.WithRequest(nodeCtx, &webhook.Request{Method: "PULL-THROUGH", Actor: "cache-rule " + m.Rule})
		j, err := p.importer.Fetch(fctx, src, repo, tag, auth, onManifest)
		if p.metrics != nil {
			p.metrics.CacheUpstreamBytes(m.Rule, j.BytesFetched)
		}
		p.region.CountTraffic(region.TrafficCacheUpstream, m.Rule, j.BytesFetched)
		// Counted once per fetch, not per puller waiting on it.
		p.count(m.Rule, map[bool]string{true: "error", false: "fetched"}[err != nil])
		if err != nil {
			err = upstreamError(m, src, err)
			p.log.WarnContext(fctx, "pull-through failed", "rule", m.Rule, "repository", repo, "reference", ref, "upstream", src.String(), "error", err)
		} else {
			p.log.InfoContext(fctx, "pulled through", "rule", m.Rule, "repository", repo, "reference", ref, "upstream", src.String(), "digest", j.Digest)
			if tag != "" {
				p.mark(repo, tag, m.Interval, true)
			}
		}
		finish(err)
	}
	if err := p.importer.Go(ctx, fetch); err != nil {
		finish(err)
	}
	return top
}

// fetching reports whether a fetch running here has (or will have)
// repo's manifest ref.
func (p *Puller) fetching(repo, ref string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.cold[repo+"|"+ref]
	return ok
}

// pass records that repo's image is being fetched by region via for this
// region's pull, until done says it is stored there (or failed): its
// other manifests (an index's platforms) are asked of via, not of every
// region and not of the region rendezvous hashing would pick.
func (p *Puller) pass(repo, via string, done <-chan error) {
	p.mu.Lock()
	if p.passing == nil {
		p.passing = map[string]*passage{}
	}
	ps := p.passing[repo]
	if ps == nil || ps.via != via {
		ps = &passage{via: via}
		p.passing[repo] = ps
	}
	ps.n++
	p.mu.Unlock()
	go func() {
		select {
		case <-done:
		case <-time.After(askBound):
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if ps.n--; ps.n == 0 && p.passing[repo] == ps {
			delete(p.passing, repo)
		}
	}()
}

// passage is a region fetching a repository's image for this region's
// pulls.
type passage struct {
	via string
	n   int
}

// askBound bounds an ask to another region to fetch an image.
const askBound = 10 * time.Minute

// Passing names the region that is fetching repo's image for a pull
// here, "" when none is: a miss in repo then asks that region first.
func (p *Puller) Passing(repo string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps := p.passing[repo]; ps != nil {
		return ps.via
	}
	return ""
}
