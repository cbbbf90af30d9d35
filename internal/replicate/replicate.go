package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/metrics"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/region"
)

// Peer is another region of the registry.
type Peer struct {
	Name     string `yaml:"name"`
	Endpoint string `yaml:"endpoint"` // base URL replication uses, e.g. http://127.0.0.1:5002
	// PublicEndpoint is where clients reach the region, when it differs
	// from Endpoint (replication through a link of its own).
	PublicEndpoint string `yaml:"publicEndpoint,omitempty"`
}

// Config says whom to replicate with.
type Config struct {
	// Peers, nearest first: content is fetched from the nearest peer that
	// holds it, and read-through asks peers in this order.
	Peers []Peer `yaml:"peers"`
	// Wait is how long one feed request long-polls (default 30 s).
	Wait time.Duration `yaml:"wait"`
	// AntiEntropyInterval is how often each peer's repositories are
	// compared and repaired (default 5 minutes).
	AntiEntropyInterval time.Duration `yaml:"antiEntropyInterval"`
	// WedgedAfter is how long replication from a peer that answers may
	// make no progress while behind before the region reports it wedged
	// (default 2 minutes).
	WedgedAfter time.Duration `yaml:"wedgedAfter"`
}

var endpointRegexp = regexp.MustCompile(`^https?://[^/\s]+/?$`)

// Validate reports every problem with its field path.
func (c Config) Validate(self string) error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range c.Peers {
		switch {
		case p.Name == self:
			errs = append(errs, fmt.Errorf("peers[%d].name: %q is this region", i, p.Name))
		case seen[p.Name]:
			errs = append(errs, fmt.Errorf("peers[%d].name: %q twice", i, p.Name))
		case p.Name == "":
			errs = append(errs, fmt.Errorf("peers[%d].name: empty", i))
		}
		seen[p.Name] = true
		if !endpointRegexp.MatchString(p.Endpoint) {
			errs = append(errs, fmt.Errorf("peers[%d].endpoint: %q must be http(s)://host:port", i, p.Endpoint))
		}
	}
	if c.Wait < 0 {
		errs = append(errs, fmt.Errorf("wait: %s is negative", c.Wait))
	}
	if c.WedgedAfter < 0 {
		errs = append(errs, fmt.Errorf("wedgedAfter: %s is negative", c.WedgedAfter))
	}
	if c.AntiEntropyInterval < 0 {
		errs = append(errs, fmt.Errorf("antiEntropyInterval: %s is negative", c.AntiEntropyInterval))
	}
	return errors.Join(errs...)
}

// Replicator follows every peer's feed into one region. Its peers are the
// static ones of its configuration and the replicas registered as
// settings (kind "replica"), which any region can add or remove at run
// time; Run reconciles its followers with them every second.
type Replicator struct {
	region              *region.Region
	static              []Peer
	secret              string // this region's peer credential (feed.Credential)
	http                *http.Client
	wait                time.Duration
	antiEntropyInterval time.Duration
	wedgedAfter         time.Duration
	log                 *slog.Logger

	mu      sync.RWMutex
	sources []*source // current peers, nearest first; replaced, never mutated
	tracker *tracker
	metrics *metrics.Node // nil: none
}

// SetMetrics has the replicator count applied records and observe lag.
func (p *Replicator) SetMetrics(m *metrics.Node) { p.metrics = m }

// New returns a replicator into r from cfg's peers, authenticating with
// secret over hc (which must have no overall timeout).
func New(r *region.Region, cfg Config, secret string, hc *http.Client, log *slog.Logger) *Replicator {
	secret = feed.Credential(secret, r.Name()) // what this region presents to its peers
	p := &Replicator{region: r, static: cfg.Peers, secret: secret, http: hc,
		wait: cfg.Wait, antiEntropyInterval: cfg.AntiEntropyInterval, log: log, tracker: newTracker()}
	if p.wait == 0 {
		p.wait = 30 * time.Second
	}
	if p.antiEntropyInterval == 0 {
		p.antiEntropyInterval = 5 * time.Minute
	}
	p.wedgedAfter = cfg.WedgedAfter
	if p.wedgedAfter == 0 {
		p.wedgedAfter = 2 * time.Minute
	}
	for _, peer := range cfg.Peers {
		p.sources = append(p.sources, newSource(peer, secret, hc))
	}
	return p
}

// peers returns the current peers, nearest first. The slice is not
// modified afterwards: callers may range over it freely.
func (p *Replicator) peers() []*source {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.sources
}

// ReplicaSetting is the value of a "replica" setting: a region of the
// registry added at run time.
type ReplicaSetting struct {
	Endpoint              string    `json:"endpoint"`
	RegionEndpointEnabled bool      `json:"regionEndpointEnabled"`
	Created               time.Time `json:"created"`
	// Ready is set by the region itself when it first caught up with
	// every peer: a region that does not answer is Creating before, Down
	// after.
	Ready bool `json:"ready,omitempty"`
}

// Members returns the regions an image must be in to be everywhere: this
// one, every configured peer, and every registered replica that has been
// Ready once (one still backfilling is not routed to, so it is not
// waited for).
func (p *Replicator) Members(ctx context.Context) ([]string, error) {
	out := []string{p.region.Name()}
	seen := map[string]bool{p.region.Name(): true}
	for _, s := range p.static {
		out, seen[s.Name] = append(out, s.Name), true
	}
	settings, err := p.region.Settings(ctx, ReplicaKind)
	if err != nil {
		return nil, err
	}
	for _, s := range settings {
		var v ReplicaSetting
		if !seen[s.Name] && json.Unmarshal(s.Value, &v) == nil && v.Ready {
			out, seen[s.Name] = append(out, s.Name), true
		}
	}
	return out, nil
}

// ReplicaKind is the setting kind of registered replicas.
const ReplicaKind = "replica"

// desired returns the peers this region should follow now: the static
// ones, then registered replicas by name (a replica named as a static peer
// keeps the static entry).
func (p *Replicator) desired(ctx context.Context) ([]Peer, error) {
	out := append([]Peer(nil), p.static...)
	seen := map[string]bool{p.region.Name(): true}
	for _, s := range p.static {
		seen[s.Name] = true
	}
	settings, err := p.region.Settings(ctx, ReplicaKind)
	if err != nil {
		return nil, err
	}
	for _, s := range settings {
		var v ReplicaSetting
		if seen[s.Name] || json.Unmarshal(s.Value, &v) != nil || !endpointRegexp.MatchString(v.Endpoint) {
			continue
		}
		seen[s.Name] = true
		out = append(out, Peer{Name: s.Name, Endpoint: v.Endpoint})
	}
	return out, nil
}

// reconcileEvery is how often Run compares its followers with the
// registered replicas.
const reconcileEvery = time.Second

// follower is one running peer: its feed follower and anti-entropy loop.
type follower struct {
	src    *source
	cancel context.CancelFunc
	done   chan struct{}
}

// Run follows every peer until ctx ends, starting and stopping followers
// as replicas are registered and removed; it returns after every follower
// has stopped.
func (p *Replicator) Run(ctx context.Context) error {
	running := map[string]*follower{}
	stop := func(f *follower) { f.cancel(); <-f.done }
	defer func() {
		for _, f := range running {
			stop(f)
		}
	}()
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	announced := false
	for {
		if !announced {
			announced = p.announceReady(ctx)
		}
		want, err := p.desired(ctx)
		if p.region.Retired() {
			want = nil // deleted with --purge: follow nobody
		}
		if err != nil && ctx.Err() == nil {
			p.log.WarnContext(ctx, "read registered replicas", "error", err)
		}
		if err == nil {
			var sources []*source
			keep := map[string]bool{}
			for _, peer := range want {
				keep[peer.Name] = true
				f, ok := running[peer.Name]
				if ok && f.src.base != strings.TrimSuffix(peer.Endpoint, "/") {
					stop(f) // moved: follow it at its new endpoint
					ok = false
				}
				if !ok {
					f = p.start(ctx, newSource(peer, p.secret, p.http))
					running[peer.Name] = f
					p.log.InfoContext(ctx, "following peer", "peer", peer.Name, "endpoint", peer.Endpoint)
				}
				sources = append(sources, f.src)
			}
			for name, f := range running {
				if !keep[name] {
					stop(f)
					delete(running, name)
					p.tracker.forget(name)
					p.log.InfoContext(ctx, "stopped following peer", "peer", name)
				}
			}
			p.mu.Lock()
			p.sources = sources
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// announceReady marks this region's own replica setting ready once its
// state is Ready (see ReplicaSetting.Ready). It reports whether there is
// nothing more to announce.
func (p *Replicator) announceReady(ctx context.Context) bool {
	s, err := p.region.Setting(ctx, ReplicaKind, p.region.Name())
	if err != nil {
		return false // not registered (yet): a configured region needs no mark
	}
	var v ReplicaSetting
	if json.Unmarshal(s.Value, &v) != nil {
		return false
	}
	if v.Ready {
		return true
	}
	st, err := p.Status(ctx)
	if err != nil || st.State != StateReady {
		return false
	}
	v.Ready = true
	value, _ := json.Marshal(v)
	if _, err := p.region.PutSetting(ctx, ReplicaKind, p.region.Name(), value); err != nil {
		p.log.WarnContext(ctx, "announce ready", "error", err)
		return false
	}
	p.log.InfoContext(ctx, "region is Ready: it has caught up with every peer")
	return true
}

// start follows peer s: its feed and anti-entropy, on whichever node of
// the region holds the lease "follow/<peer>" (with one node, this one, at
// once). With several nodes, the holder publishes its progress with the
// peer every second, so every node reports the same status.
func (p *Replicator) start(ctx context.Context, s *source) *follower {
	ctx, cancel := context.WithCancel(ctx)
	f := &follower{src: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		_ = p.region.RunLeased(ctx, "follow/"+s.name, func(ctx context.Context) error {
			p.tracker.follow(s.name, true)
			defer p.tracker.follow(s.name, false)
			var g errgroup.Group
			g.Go(func() error { p.follow(ctx, s); return nil })
			g.Go(func() error { p.antiEntropy(ctx, s); return nil })
			if p.region.Shared() {
				g.Go(func() error { p.publish(ctx, s); return nil })
			}
			return g.Wait()
		})
	}()
	return f
}

// Backoff bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// backoff sleeps between retries: 100 ms doubling to 30 s, with jitter.
type backoff struct{ d time.Duration }

// wait logs the failure and sleeps; false when ctx ended meanwhile.
func (b *backoff) wait(ctx context.Context, log *slog.Logger, what string, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	b.d = max(b.d, minBackoff)
	log.WarnContext(ctx, what, "error", err, "retry_in", b.d)
	t := time.NewTimer(b.d + rand.N(b.d/2))
	defer t.Stop()
	b.d = min(b.d*2, maxBackoff)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (b *backoff) reset() { b.d = minBackoff }

// pagesAhead is how many fetched pages may wait to be applied.
const pagesAhead = 4

// follow applies peer s's feed, in order, until ctx ends. A fetcher keeps
// one feed request outstanding while the applier works, and starts the
// blob fetches of each page as it arrives, so a record waits for neither a
// round trip to the feed nor the blobs before it. The durable cursor moves
// only as records are applied.
func (p *Replicator) follow(ctx context.Context, s *source) {
	log := p.log.With("peer", s.name)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan *feed.Page, pagesAhead)
	var prefetches errgroup.Group
	prefetches.SetLimit(prefetchers)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(pages)
		p.fetchPages(ctx, s, log, pages, &prefetches)
	}()
	p.applyPages(ctx, s, log, pages)
	cancel()
	for range pages { // let the fetcher see the cancel and stop
	}
	<-done
	_ = prefetches.Wait()
}

// fetchPages long-polls s's feed from the applied cursor on and hands each
// page to pages, after starting the fetches of its blobs.
func (p *Replicator) fetchPages(ctx context.Context, s *source, log *slog.Logger, pages chan<- *feed.Page, prefetches *errgroup.Group) {
	var b backoff
	var since int64
	for ctx.Err() == nil {
		cursor, err := p.region.Cursor(ctx, s.name)
		if err == nil {
			since = cursor
			break
		}
		if !b.wait(ctx, log, "read cursor", err) {
			return
		}
	}
	// The first request does not wait: it learns the peer's head at once,
	// so this region's state is known without a long-poll's delay.
	wait := time.Duration(0)
	for ctx.Err() == nil {
		page, err := s.feed.Fetch(ctx, since, feed.DefaultLimit, wait)
		if err != nil {
			if ctx.Err() == nil {
				p.tracker.feedFailed(s.name, s.base, err)
			}
			if !b.wait(ctx, log, "fetch feed", err) {
				return
			}
			continue
		}
		b.reset()
		wait = p.wait
		p.tracker.fetched(s.name, s.base, page.Head)
		if len(page.Records) == 0 {
			continue
		}
		for _, rec := range page.Records {
			if rec.Kind == meta.KindBlob && rec.Digest.Validate() == nil {
				// Failures are left to the ordered apply, which retries.
				prefetches.Go(func() error {
					v, _ := hlc.ParseVersion(rec.Version)
					if ok, err := p.region.BlobWanted(ctx, rec.Repo, rec.Digest, v); err == nil && ok {
						_ = p.fetchContent(ctx, s, rec.Repo, rec.Digest, rec.Size, rec.Data)
					}
					return nil
				})
			}
		}
		since = page.Records[len(page.Records)-1].Seq
		select {
		case pages <- page:
		case <-ctx.Done():
			return
		}
	}
}

// applyPages applies every record of every page in order, retrying a
// record until it applies.
func (p *Replicator) applyPages(ctx context.Context, s *source, log *slog.Logger, pages <-chan *feed.Page) {
	var b backoff
	for page := range pages {
		for _, rec := range page.Records {
			failingSince, reported := time.Time{}, false
			for {
				err := p.apply(ctx, s, rec.Meta())
				if err == nil {
					var blobBytes int64
					if rec.Kind == meta.KindBlob {
						blobBytes = rec.Size
					}
					p.tracker.applied(s.name, s.base, rec.Created, blobBytes)
					p.metrics.Applied(s.name, rec.Kind, time.Since(rec.Created))
					b.reset()
					break
				}
				p.tracker.failed(s.name, s.base, fmt.Errorf("apply %s %s seq %d: %w", rec.Kind, rec.Repo, rec.Seq, err))
				if failingSince.IsZero() {
					failingSince = time.Now()
				}
				if !reported && time.Since(failingSince) >= p.wedgedAfter && ctx.Err() == nil {
					// Stuck on this record while the peer answers: tell the
					// webhooks once; the retries go on.
					ferr := p.region.ReplicationFailed(ctx, s.name, rec.Repo, rec.Digest, rec.Tag,
						fmt.Errorf("cannot apply %s record %d from %s for %s: %w", rec.Kind, rec.Seq, s.name, time.Since(failingSince).Round(time.Second), err))
					reported = ferr == nil
				}
				if !b.wait(ctx, log, fmt.Sprintf("apply %s %s seq %d", rec.Kind, rec.Repo, rec.Seq), err) {
					return
				}
			}
		}
	}
}

// apply applies one record of s's feed, idempotently.
func (p *Replicator) apply(ctx context.Context, s *source, rec meta.Record) error {
	r := p.region
	switch rec.Kind {
	case meta.KindBlob:
		if ok, err := r.BlobWanted(ctx, rec.Repo, rec.Digest, rec.Version); err != nil {
			return err
		} else if !ok {
			return r.Skip(ctx, s.name, rec.Seq) // deleted here since: nothing to fetch
		}
		defer r.Lease(rec.Digest)() // from fetch to link: safe from the sweep
		// Content first, then the link and the cursor in one transaction.
		err := p.fetchContent(ctx, s, rec.Repo, rec.Digest, rec.Size, rec.Data)
		if errors.Is(err, errGone) {
			return r.Skip(ctx, s.name, rec.Seq)
		}
		if err != nil {
			return err
		}
		return r.ApplyBlob(ctx, s.name, rec.Seq, rec.Repo, rec.Digest, rec.Version)
	case meta.KindBlobDelete:
		return r.ApplyBlobDelete(ctx, s.name, rec.Seq, rec.Repo, rec.Digest, rec.Version)
	case meta.KindManifest:
		err := p.ensureManifest(ctx, s, rec.Repo, rec.Digest, rec.Version, &rec)
		if errors.Is(err, errGone) || errors.Is(err, errDeleted) {
			return r.Skip(ctx, s.name, rec.Seq)
		}
		return err
	case meta.KindTag:
		// The manifest first (with the version its origin gave it, not the
		// tag's: a retag must not revive a manifest deleted since); if it
		// is deleted, here or at the peer, the tag still applies by its
		// version (pointing at nothing servable), so tags converge
		// whatever became of their manifests.
		err := p.ensureManifest(ctx, s, rec.Repo, rec.Digest, hlc.Version{}, nil)
		if err != nil && !errors.Is(err, errGone) && !errors.Is(err, errDeleted) {
			return err
		}
		return r.ApplyTag(ctx, s.name, rec.Seq, rec.Repo, rec.Tag, rec.Digest, rec.Version, err == nil)
	case meta.KindTagDelete:
		return r.ApplyTagDelete(ctx, s.name, rec.Seq, rec.Repo, rec.Tag, rec.Version)
	case meta.KindManifestDelete:
		return r.ApplyManifestDelete(ctx, s.name, rec.Seq, rec.Repo, rec.Digest, rec.Version)
	case meta.KindAck:
		return r.ApplyPresence(ctx, s.name, rec.Seq, rec.Repo, rec.Digest)
	case meta.KindSetting:
		return r.ApplySetting(ctx, s.name, rec.Seq, meta.Setting{
			Kind: rec.MediaType, Name: rec.Tag, Value: rec.Data, Version: rec.Version, Deleted: rec.Deleted})
	}
	return fmt.Errorf("record %d of %s: unknown kind %q", rec.Seq, s.name, rec.Kind)
}

// ensureBlob makes blob d present and linked in repo here, for a manifest
// that references it (or a client that reads it through): a delete of the
// blob here does not stop it (region.AdoptBlob).
func (p *Replicator) ensureBlob(ctx context.Context, s *source, repo string, d digest.Digest, size int64, inline []byte) error {
	r := p.region
	defer r.Lease(d)()
	if ok, err := r.HasBlob(ctx, repo, d); ok || err != nil {
		return err
	}
	if err := p.fetchContent(ctx, s, repo, d, size, inline); err != nil {
		return err
	}
	return r.AdoptBlob(ctx, repo, d)
}

// stagingID names the staging upload a fetch of d from s writes to.
func stagingID(s *source, d digest.Digest) string { return "repl." + s.name + "." + d.Encoded() }

// fetchContent makes blob d's bytes present in the content store: from the
// record's inline data when it has some, else from the nearest peer that
// holds it (see nearer), else from s, the peer whose record named it.
// Either way they are verified against d before they are stored.
func (p *Replicator) fetchContent(ctx context.Context, s *source, repo string, d digest.Digest, size int64, inline []byte) error {
	if _, ok, err := p.region.HasContent(ctx, d); ok || err != nil {
		return err
	}
	if inline != nil {
		open := func(context.Context, int64) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(inline)), nil
		}
		_, err := p.region.FetchBlob(ctx, stagingID(s, d), d, size, open, nil)
		return err
	}
	if n := p.nearer(ctx, s, repo, d, size); n != nil {
		open := func(ctx context.Context, offset int64) (io.ReadCloser, error) { return n.blob(ctx, repo, d, offset) }
		_, err := p.region.FetchBlob(ctx, stagingID(n, d), d, size, open, nil)
		if err == nil {
			return nil
		}
		p.log.InfoContext(ctx, "fetch from a nearer peer failed; asking the origin", "peer", n.name, "digest", d, "error", err)
	}
	open := func(ctx context.Context, offset int64) (io.ReadCloser, error) { return s.blob(ctx, repo, d, offset) }
	_, err := p.region.FetchBlob(ctx, stagingID(s, d), d, size, open, nil)
	return err
}

// nearMin is the smallest blob worth asking nearer peers about: below it,
// the extra round trip of asking costs more than fetching from afar.
const nearMin = 1 << 20

// nearer returns a peer listed before s (peers are listed nearest first)
// that already holds blob d of repo, or nil.
func (p *Replicator) nearer(ctx context.Context, s *source, repo string, d digest.Digest, size int64) *source {
	if size < nearMin {
		return nil
	}
	for _, n := range p.peers() {
		if n == s {
			return nil
		}
		if got, err := n.blobSize(ctx, repo, d); err == nil && got == size {
			return n
		}
	}
	return nil
}

// prefetchers bounds the blob fetches a follower runs ahead of its apply
// (each holds one 1 MiB buffer). A far link needs its bandwidth-delay
// product in flight: 100 MB/s x 80 ms RTT is 8 MB, eight 1 MiB layers.
// Measured, backfill of 1,000 1 MiB images over such a link: 41% of it
// with 4, 92% with 16 (bench -only backfill).
const prefetchers = 16

// referenceFetchers bounds the blobs and children of one manifest fetched
// at once.
const referenceFetchers = 8

// ensureManifest makes manifest d present in repo here, blobs and child
// manifests first. v is the manifest's version, when the caller knows it
// (its feed record, anti-entropy); zero takes the version the peer tells
// as it serves it (a borrowed copy without one stays at zero, so every
// real write and delete wins over it). A tombstone here at least as new as
// that version stops it: errDeleted, and nothing is stored (invariant 9).
// With rec, the manifest record of s's feed being applied, s's cursor
// moves to it in the apply, the record's inline bytes are used (verified
// like fetched ones), and its tag (the one the origin pushed it with) is
// passed on for the replicated event.
func (p *Replicator) ensureManifest(ctx context.Context, s *source, repo string, d digest.Digest, v hlc.Version, rec *meta.Record) error {
	r := p.region
	peer, seq, pushedTag := "", int64(0), ""
	fetched := fetchedManifest{}
	if rec != nil {
		peer, seq, pushedTag = s.name, rec.Seq, rec.Tag
		fetched = fetchedManifest{mediaType: rec.MediaType, payload: rec.Data}
	}
	if ok, err := r.HasManifest(ctx, repo, d); err != nil {
		return err
	} else if ok {
		if peer != "" {
			return r.ApplyManifestHeld(ctx, peer, seq, repo, d, v)
		}
		return nil
	}
	tomb, deleted, _, err := r.ManifestRow(ctx, repo, d)
	if err != nil {
		return err
	}
	if deleted && !v.IsZero() && !tomb.Less(v) {
		return fmt.Errorf("manifest %s of %s (version %s; deleted here at %s): %w", d, repo, v, tomb, errDeleted)
	}
	if fetched.payload == nil {
		mt := fetched.mediaType
		if fetched, err = s.manifest(ctx, repo, d, r.MaxManifestSize()); err != nil {
			return err
		}
		if mt != "" && fetched.mediaType == "" {
			fetched.mediaType = mt
		}
	}
	if v.IsZero() {
		v = fetched.version
	}
	if deleted && !tomb.Less(v) {
		return fmt.Errorf("manifest %s of %s from %s (version %s; deleted here at %s): %w", d, repo, s.name, v, tomb, errDeleted)
	}
	m, err := oci.ParseManifest(fetched.mediaType, fetched.payload)
	if err != nil {
		return fmt.Errorf("manifest %s from %s: %w", d, s.name, err)
	}
	// Children and blobs are fetched at once (several round trips to a far
	// peer overlap); the manifest is applied only after all are here
	// (invariant 3).
	// No shared cancellation: one failed fetch must not cut another that a
	// concurrent fetch of the same blob (the feed's, a read-through) waits on.
	var g errgroup.Group
	g.SetLimit(referenceFetchers)
	for _, c := range m.Manifests {
		g.Go(func() error {
			if err := p.ensureManifest(ctx, s, repo, c.Digest, hlc.Version{}, nil); err != nil {
				return fmt.Errorf("child %s of %s: %w", c.Digest, d, err)
			}
			return nil
		})
	}
	for _, b := range m.Blobs() {
		g.Go(func() error {
			if err := p.ensureBlob(ctx, s, repo, b.Digest, b.Size, nil); err != nil {
				return fmt.Errorf("blob %s of %s: %w", b.Digest, d, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return r.ApplyManifest(ctx, peer, seq, repo, d, m.MediaType, fetched.payload, v, pushedTag)
}
