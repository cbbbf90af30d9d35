package cache

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Warmer asks the ping of the registry at base (scheme://host) now and
// keeps its answer (transfer.PingCache.Warm).
type Warmer func(ctx context.Context, base string)

// SetWarmer has RunWarm warm the rules' upstreams with w every every
// (and each new one at once).
func (p *Puller) SetWarmer(w Warmer, every time.Duration) { p.warm, p.warmEvery = w, every }

// warmPoll is how often RunWarm looks for upstreams new to the rules (a
// rule applied here is read at once: region.changingRecent).
const warmPoll = 250 * time.Millisecond

// RunWarm keeps the pings of the rules' upstreams warm until ctx ends: an
// upstream is pinged as its rule arrives and then every warmEvery, so a
// cold pull's first request to it is its manifest's GET (one round trip)
// rather than the ping clients send first. One GET /v2/ per upstream
// host per period; an upstream no rule names any more is let go.
func (p *Puller) RunWarm(ctx context.Context) error {
	if p.warm == nil || p.warmEvery <= 0 {
		return nil
	}
	warmed := map[string]time.Time{}
	t := time.NewTicker(warmPoll)
	defer t.Stop()
	for {
		rules, err := p.Rules(ctx, false)
		if err == nil {
			bases := upstreamBases(rules)
			for _, b := range bases {
				if at, ok := warmed[b]; !ok || time.Since(at) >= p.warmEvery {
					wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					p.warm(wctx, b)
					cancel()
					warmed[b] = time.Now()
				}
			}
			for b := range warmed {
				if !slices.Contains(bases, b) {
					delete(warmed, b)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// upstreamBases lists the registries rules fetch from, as scheme://host
// the way go-containerregistry addresses them (docker.io is
// index.docker.io; the scheme http when it would try plain HTTP too),
// sorted. Pure.
func upstreamBases(rules map[string]Rule) []string {
	var out []string
	for _, r := range rules {
		src, insecure := strings.CutPrefix(r.Source, "http://")
		host, _, _ := strings.Cut(src, "/")
		opts := []name.Option{name.StrictValidation}
		if insecure {
			opts = append(opts, name.Insecure)
		}
		reg, err := name.NewRegistry(host, opts...)
		if err != nil {
			continue
		}
		// "http" for a registry clients may reach without TLS (an
		// http:// rule, a loopback or private address): they try https
		// first, then http (PingCache.Warm asks both).
		if b := reg.Scheme() + "://" + reg.RegistryStr(); !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out
}
