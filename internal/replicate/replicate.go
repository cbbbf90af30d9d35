package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"regexp"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
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
	Peers []Peer `yaml:"peers"`
	// Wait is how long one feed request long-polls (default 30 s).
	Wait time.Duration `yaml:"wait"`
	// AntiEntropyInterval is how often each peer's repositories are
	// compared and repaired (default 5 minutes).
	AntiEntropyInterval time.Duration `yaml:"antiEntropyInterval"`
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
	if c.AntiEntropyInterval < 0 {
		errs = append(errs, fmt.Errorf("antiEntropyInterval: %s is negative", c.AntiEntropyInterval))
	}
	return errors.Join(errs...)
}

// Replicator follows every peer's feed into one region.
type Replicator struct {
	region              *region.Region
	sources             []*source
	wait                time.Duration
	antiEntropyInterval time.Duration
	log                 *slog.Logger
}

// New returns a replicator into r from cfg's peers, authenticating with
// secret over hc (which must have no overall timeout).
func New(r *region.Region, cfg Config, secret string, hc *http.Client, log *slog.Logger) *Replicator {
	p := &Replicator{region: r, wait: cfg.Wait, antiEntropyInterval: cfg.AntiEntropyInterval, log: log}
	if p.wait == 0 {
		p.wait = 30 * time.Second
	}
	if p.antiEntropyInterval == 0 {
		p.antiEntropyInterval = 5 * time.Minute
	}
	for _, peer := range cfg.Peers {
		p.sources = append(p.sources, newSource(peer, secret, hc))
	}
	return p
}

// Run follows every peer until ctx ends; it returns after every follower
// has stopped.
func (p *Replicator) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, s := range p.sources {
		g.Go(func() error { p.follow(ctx, s); return nil })
		g.Go(func() error { p.antiEntropy(ctx, s); return nil })
	}
	return g.Wait()
}

// Backoff bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// follow applies peer s's feed, in order, until ctx ends.
func (p *Replicator) follow(ctx context.Context, s *source) {
	log := p.log.With("peer", s.name)
	backoff := minBackoff
	fail := func(what string, err error) bool {
		if ctx.Err() != nil {
			return false
		}
		log.WarnContext(ctx, what, "error", err, "retry_in", backoff)
		t := time.NewTimer(backoff + rand.N(backoff/2))
		defer t.Stop()
		backoff = min(backoff*2, maxBackoff)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		cursor, err := p.region.Cursor(ctx, s.name)
		if err != nil {
			if !fail("read cursor", err) {
				return
			}
			continue
		}
		page, err := s.feed.Fetch(ctx, cursor, feed.DefaultLimit, p.wait)
		if err != nil {
			if !fail("fetch feed", err) {
				return
			}
			continue
		}
		for _, rec := range page.Records {
			for ctx.Err() == nil {
				err := p.apply(ctx, s, rec.Meta())
				if err == nil {
					backoff = minBackoff
					break
				}
				if !fail(fmt.Sprintf("apply %s %s seq %d", rec.Kind, rec.Repo, rec.Seq), err) {
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
		err := p.ensureBlob(ctx, s, rec.Repo, rec.Digest, rec.Size)
		if errors.Is(err, errGone) {
			return r.Skip(ctx, s.name, rec.Seq)
		}
		if err != nil {
			return err
		}
		return r.ApplyBlob(ctx, s.name, rec.Seq, rec.Repo, rec.Digest)
	case meta.KindManifest:
		err := p.ensureManifest(ctx, s, rec.Repo, rec.Digest, rec.Version, s.name, rec.Seq)
		if errors.Is(err, errGone) {
			return r.Skip(ctx, s.name, rec.Seq)
		}
		return err
	case meta.KindTag:
		err := p.ensureManifest(ctx, s, rec.Repo, rec.Digest, rec.Version, "", 0)
		if errors.Is(err, errGone) {
			return r.Skip(ctx, s.name, rec.Seq)
		}
		if err != nil {
			return err
		}
		return r.ApplyTag(ctx, s.name, rec.Seq, rec.Repo, rec.Tag, rec.Digest, rec.Version)
	case meta.KindTagDelete:
		return r.ApplyTagDelete(ctx, s.name, rec.Seq, rec.Repo, rec.Tag, rec.Version)
	case meta.KindManifestDelete:
		return r.ApplyManifestDelete(ctx, s.name, rec.Seq, rec.Repo, rec.Digest, rec.Version)
	case meta.KindAck:
		return r.ApplyPresence(ctx, s.name, rec.Seq, rec.Repo, rec.Digest)
	}
	return fmt.Errorf("record %d of %s: unknown kind %q", rec.Seq, s.name, rec.Kind)
}

// ensureBlob makes blob d present and linked in repo here.
func (p *Replicator) ensureBlob(ctx context.Context, s *source, repo string, d digest.Digest, size int64) error {
	r := p.region
	if ok, err := r.HasBlob(ctx, repo, d); ok || err != nil {
		return err
	}
	if _, ok, err := r.HasContent(ctx, d); err != nil {
		return err
	} else if !ok {
		id := "repl." + s.name + "." + d.Encoded()
		open := func(ctx context.Context, offset int64) (io.ReadCloser, error) { return s.blob(ctx, repo, d, offset) }
		if err := r.FetchBlob(ctx, id, d, size, open); err != nil {
			return err
		}
	}
	return r.ApplyBlob(ctx, "", 0, repo, d)
}

// ensureManifest makes manifest d present in repo here, blobs and child
// manifests first. A peer that names itself (with seq) has its cursor
// moved by the apply.
func (p *Replicator) ensureManifest(ctx context.Context, s *source, repo string, d digest.Digest, v hlc.Version, peer string, seq int64) error {
	r := p.region
	if ok, err := r.HasManifest(ctx, repo, d); err != nil {
		return err
	} else if ok {
		if peer != "" {
			return r.ApplyPresence(ctx, peer, seq, repo, d)
		}
		return nil
	}
	mediaType, payload, err := s.manifest(ctx, repo, d, r.MaxManifestSize())
	if err != nil {
		return err
	}
	m, err := oci.ParseManifest(mediaType, payload)
	if err != nil {
		return fmt.Errorf("manifest %s from %s: %w", d, s.name, err)
	}
	for _, c := range m.Manifests {
		if err := p.ensureManifest(ctx, s, repo, c.Digest, v, "", 0); err != nil {
			return fmt.Errorf("child %s of %s: %w", c.Digest, d, err)
		}
	}
	for _, b := range m.Blobs() {
		if err := p.ensureBlob(ctx, s, repo, b.Digest, b.Size); err != nil {
			return fmt.Errorf("blob %s of %s: %w", b.Digest, d, err)
		}
	}
	return r.ApplyManifest(ctx, peer, seq, repo, d, m.MediaType, payload, v)
}
