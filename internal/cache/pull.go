package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/outbound"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/transfer"
	"github.com/georeg/georeg/internal/webhook"
)

// Puller fetches what a cached repository lacks from its upstream.
type Puller struct {
	region   *region.Region
	importer *transfer.Importer
	log      *slog.Logger
	flights  singleflight.Group // one upstream fetch per image at a time on this node
}

// New returns the puller of r, fetching with im.
func New(r *region.Region, im *transfer.Importer, log *slog.Logger) *Puller {
	return &Puller{region: r, importer: im, log: log}
}

// Rules returns the cache rules, by name.
func (p *Puller) Rules(ctx context.Context) (map[string]Rule, error) {
	ss, err := p.region.Settings(ctx, RuleKind)
	if err != nil {
		return nil, err
	}
	out := map[string]Rule{}
	for _, s := range ss {
		var r Rule
		if json.Unmarshal(s.Value, &r) == nil {
			out[s.Name] = r
		}
	}
	return out, nil
}

// Ensure makes repo's manifest ref (a tag or digest) present here from
// the upstream of the rule repo falls under, and returns its digest; ok
// false when repo falls under no rule (nothing was asked). Concurrent
// pulls of one image on this node cause one upstream fetch.
func (p *Puller) Ensure(ctx context.Context, repo, ref string) (digest.Digest, bool, error) {
	rules, err := p.Rules(ctx)
	if err != nil || len(rules) == 0 {
		return "", false, err
	}
	m, ok := Matched(rules, repo)
	if !ok {
		return "", false, nil
	}
	auth := authn.Anonymous
	if m.Cred != "" {
		s, err := p.region.Setting(ctx, CredentialSetKind, m.Cred)
		if err != nil {
			return "", true, ocierr.Unavailable.Withf("cache rule %s names credential set %s, which this region does not have: %v", m.Rule, m.Cred, err)
		}
		var c CredentialSet
		if err := json.Unmarshal(s.Value, &c); err != nil {
			return "", true, fmt.Errorf("credential set %s: %w", m.Cred, err)
		}
		auth = &authn.Basic{Username: c.Username, Password: c.Password}
	}
	upstream, opts := m.Upstream, []name.Option{name.StrictValidation}
	if u, insecure := strings.CutPrefix(upstream, "http://"); insecure {
		upstream, opts = u, append(opts, name.Insecure)
	}
	sep, tag := ":", ref
	if oci.IsDigest(ref) {
		sep, tag = "@", ""
	}
	src, err := name.ParseReference(upstream+sep+ref, opts...)
	if err != nil {
		return "", true, ocierr.ManifestUnknown.Withf("cache rule %s maps %s:%s to %s%s%s, which is not a valid reference: %v", m.Rule, repo, ref, upstream, sep, ref, err)
	}
	v, err, _ := p.flights.Do(repo+"|"+ref, func() (any, error) {
		// The fetch outlives a client that goes away: others may wait on it.
		fctx := webhook.WithRequest(context.WithoutCancel(ctx), &webhook.Request{Method: "PULL-THROUGH", Actor: "cache-rule " + m.Rule})
		return p.importer.Fetch(fctx, src, repo, tag, auth)
	})
	if err != nil {
		return "", true, upstreamError(m, src, err)
	}
	d := v.(digest.Digest)
	p.log.InfoContext(ctx, "pulled through", "rule", m.Rule, "repository", repo, "reference", ref, "upstream", src.String(), "digest", d)
	return d, true, nil
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
	return ocierr.Unavailable.Withf("cache rule %s: fetching %s from the upstream failed: %s", m.Rule, src, outbound.Trim(err.Error()))
}
