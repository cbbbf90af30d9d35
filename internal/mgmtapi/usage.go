package mgmtapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/cost"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// UsageReport is the answer of GET /_georeg/v1/usage: what each region
// stores, by its own metadata.
type UsageReport struct {
	Regions []RegionUsage `json:"regions"`
	// Unreachable lists the regions that did not answer within 5 s.
	Unreachable []string `json:"unreachable,omitempty"`
	// Estimate prices the window's traffic of the regions listed with
	// the registry's price table (internal/cost; not with local=true).
	Estimate *cost.Estimate `json:"estimate,omitempty"`
}

// RegionUsage is one region's usage; Repository and Top when asked for.
type RegionUsage struct {
	Region string `json:"region"`
	meta.Usage
	// Traffic of the window asked for (every node's; region.CountTraffic).
	Since time.Time `json:"since"`
	// ServedBytes: blob bytes sent to clients from this region's store;
	// ServedReadThroughBytes: sent to clients as read through from peers.
	ServedBytes            int64 `json:"servedBytes"`
	ServedReadThroughBytes int64 `json:"servedReadThroughBytes"`
	// ReceivedBytes: blob bytes received from each peer to replicate
	// (feed, backfill, repairs); ReceivedReadThroughBytes: for clients'
	// read-through.
	ReceivedBytes            map[string]int64 `json:"receivedBytes"`
	ReceivedReadThroughBytes map[string]int64 `json:"receivedReadThroughBytes"`
	Repository               *meta.RepoUsage  `json:"repository,omitempty"`
	Top                      []meta.RepoUsage `json:"top,omitempty"`
	// Cache is the artifact cache's traffic of the window, by cache rule.
	Cache map[string]*CacheUsage `json:"cache,omitempty"`
}

// CacheUsage is what one cache rule's repositories did in a region.
type CacheUsage struct {
	// Hits: manifest pulls served as held (or stale while the upstream
	// could not be asked); Misses: fetched, here or by another region.
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	// UpstreamBytes: blob bytes this region fetched from the upstream;
	// ServedBytes: blob bytes of the rule's repositories sent to clients.
	UpstreamBytes int64 `json:"upstreamBytes"`
	ServedBytes   int64 `json:"servedBytes"`
}

// maxTop bounds --top.
const maxTop = 1000

// usage serves GET /_georeg/v1/usage[?since=24h][&repository=R][&top=N][&home=H][&recent=true][&local=true]:
// every region's usage, and its traffic of the hours since (whole hours:
// counts are kept per hour), each region asked at once (5 s each), or
// this region's with local=true; then the estimate of what that traffic
// cost (internal/cost). With recent=true, stored bytes and counts are
// each region's figure of a little while ago (region.RecentUsage: the
// dashboard's), not read now.
func (a *API) usage(ctx context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	repo := q.Get("repository")
	if repo != "" {
		if err := oci.ValidateRepository(repo); err != nil {
			return nil, ocierr.NameInvalid.Withf("repository=%q: %v", repo, err)
		}
	}
	top := 0
	if s := q.Get("top"); s != "" {
		var err error
		if top, err = strconv.Atoi(s); err != nil || top < 1 || top > maxTop {
			return nil, ocierr.PaginationNumberInvalid.Withf("top=%q: give 1 to %d", s, maxTop)
		}
	}
	window := 24 * time.Hour
	if s := q.Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, ocierr.RequestInvalid.Withf("since=%q: give a duration such as 1h, 24h or 720h", s)
		}
		window = d
	}
	repoOnly := q.Get("only") == "repository"
	recent := q.Get("recent") == "true"
	if repoOnly && repo == "" {
		return nil, ocierr.RequestInvalid.Withf("only=repository needs repository=")
	}
	home := q.Get("home")
	if q.Get("local") == "true" {
		u, err := a.localUsage(ctx, repo, top, window, repoOnly, recent)
		if err != nil {
			return nil, err
		}
		return UsageReport{Regions: []RegionUsage{*u}}, nil
	}
	rep, err := a.everyRegionsUsage(ctx, repo, top, window, repoOnly, recent)
	if err != nil || repoOnly {
		return rep, err
	}
	prices, err := a.region.Prices(ctx)
	if err != nil {
		return nil, err
	}
	var traffic []cost.Traffic
	for _, g := range rep.Regions {
		t := cost.Traffic{Region: g.Region, Served: g.ServedBytes + g.ServedReadThroughBytes, Received: map[string]int64{}}
		for peer, n := range g.ReceivedBytes {
			t.Received[peer] += n
		}
		for peer, n := range g.ReceivedReadThroughBytes {
			t.Received[peer] += n
		}
		traffic = append(traffic, t)
	}
	if home != "" && !slices.ContainsFunc(traffic, func(t cost.Traffic) bool { return t.Region == home }) {
		return nil, ocierr.RequestInvalid.Withf("home=%q is not among the regions that answered", home)
	}
	e := cost.Estimated(prices, traffic, home)
	rep.Estimate = &e
	return rep, nil
}

// everyRegionsUsage asks every region at once (5 s each) for its usage,
// with its traffic of the window; with repoOnly, for repository repo's
// alone.
func (a *API) everyRegionsUsage(ctx context.Context, repo string, top int, window time.Duration, repoOnly, recent bool) (UsageReport, error) {
	all, err := a.replications(ctx)
	if err != nil {
		return UsageReport{}, err
	}
	got := make([]*RegionUsage, len(all))
	var wg sync.WaitGroup
	for i, rep := range all {
		wg.Go(func() {
			if rep.Name == a.region.Name() {
				got[i], _ = a.localUsage(ctx, repo, top, window, repoOnly, recent)
				return
			}
			v := url.Values{"local": {"true"}}
			if window > 0 { // 0 with repoOnly: no traffic asked
				v.Set("since", window.String())
			}
			if repo != "" {
				v.Set("repository", repo)
			}
			if top > 0 {
				v.Set("top", strconv.Itoa(top))
			}
			if repoOnly {
				v.Set("only", "repository")
			}
			if recent {
				v.Set("recent", "true")
			}
			var one UsageReport
			if err := a.peerGet(ctx, rep.Name, rep.Endpoint, "/_georeg/v1/usage?"+v.Encode(), 16<<20, &one); err == nil && len(one.Regions) == 1 {
				got[i] = &one.Regions[0]
			}
		})
	}
	wg.Wait()
	out := UsageReport{Regions: []RegionUsage{}}
	for i, g := range got {
		if g == nil {
			out.Unreachable = append(out.Unreachable, all[i].Name)
			continue
		}
		out.Regions = append(out.Regions, *g)
	}
	return out, nil
}

// localUsage is this region's usage, as a report of one region.
// With repoOnly, only repository repo's is read.
func (a *API) localUsage(ctx context.Context, repo string, top int, window time.Duration, repoOnly, recent bool) (*RegionUsage, error) {
	out := &RegionUsage{Region: a.region.Name(), ReceivedBytes: map[string]int64{}, ReceivedReadThroughBytes: map[string]int64{}}
	if repoOnly {
		ru, err := a.region.RepoUsage(ctx, repo)
		out.Repository = &ru
		return out, err
	}
	var u meta.Usage
	var err error
	if recent {
		u, _, err = a.region.RecentUsage(ctx)
	} else {
		u, err = a.region.Usage(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	since := time.Now().Add(-window)
	out.Usage, out.Since = u, since.Truncate(time.Hour).UTC()
	traffic, err := a.region.TrafficSince(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("traffic: %w", err)
	}
	for _, t := range traffic {
		switch t.Kind {
		case region.TrafficServed:
			out.ServedBytes += t.Bytes
		case region.TrafficServedReadThrough:
			out.ServedReadThroughBytes += t.Bytes
		case region.TrafficReceived:
			out.ReceivedBytes[t.Peer] += t.Bytes
		case region.TrafficReceivedReadThrough:
			out.ReceivedReadThroughBytes[t.Peer] += t.Bytes
		case region.TrafficCacheHits, region.TrafficCacheMisses, region.TrafficCacheUpstream, region.TrafficCacheServed:
			if out.Cache == nil {
				out.Cache = map[string]*CacheUsage{}
			}
			c := out.Cache[t.Peer]
			if c == nil {
				c = &CacheUsage{}
				out.Cache[t.Peer] = c
			}
			switch t.Kind {
			case region.TrafficCacheHits:
				c.Hits += t.Bytes
			case region.TrafficCacheMisses:
				c.Misses += t.Bytes
			case region.TrafficCacheUpstream:
				c.UpstreamBytes += t.Bytes
			case region.TrafficCacheServed:
				c.ServedBytes += t.Bytes
			}
		}
	}
	if repo != "" {
		ru, err := a.region.RepoUsage(ctx, repo)
		if err != nil {
			return nil, err
		}
		out.Repository = &ru
	}
	if top > 0 {
		if out.Top, err = a.region.TopRepositories(ctx, top); err != nil {
			return nil, err
		}
	}
	return out, nil
}
