package mgmtapi

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/replicate"
)

// Dashboard answers GET /_georeg/v1/dashboard, what the /ui/ page shows:
// every region with its state and routing, the replication lag between
// each pair, recent images with where each is, and the repositories.
type Dashboard struct {
	Region  string            `json:"region"` // the region that answered
	Regions []DashboardRegion `json:"regions"`
	// Lag[to][from] is how far region to is behind region from.
	Lag          map[string]map[string]DashboardLag `json:"lag"`
	Images       []DashboardImage                   `json:"images"`
	Repositories []meta.RepoCount                   `json:"repositories"`
	// Deleted are the newest deletes soft delete keeps restorable in the
	// answering region.
	Deleted []region.DeletedManifest `json:"deleted"`
	At      time.Time                `json:"at"`
}

// DashboardLag is how far one region is behind another now, as the
// behind region reports it.
type DashboardLag struct {
	State        string `json:"state"`        // caught up, catching up, unreachable, not heard from yet
	EventsBehind int64  `json:"eventsBehind"` // records of the other not applied yet
	BacklogBytes int64  `json:"backlogBytes"` // blob bytes of them
	// OldestUnappliedSeconds is the age of the oldest record fetched and
	// not applied (0: none waiting).
	OldestUnappliedSeconds float64 `json:"oldestUnappliedSeconds"`
	// LastLagSeconds is the lag of the last record applied: from its
	// commit in the other region to its apply here.
	LastLagSeconds float64 `json:"lastLagSeconds"`
	Wedged         bool    `json:"wedged"`
}

// DashboardRegion is one region on the dashboard.
type DashboardRegion struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	State    string `json:"state"`   // Creating, Syncing, Ready or Down (did not answer)
	Routing  bool   `json:"routing"` // routing to it is turned on
	// Routed is what the front door does with it now (effectiveRouting).
	Routed string `json:"routed"`
	// Pushes: "yes", or "pulls only" while the region is out of storage
	// space ("" when it did not answer).
	Pushes string `json:"pushes,omitempty"`
	Error  string `json:"error,omitempty"`
}

// DashboardImage is a tag and, per region, present or pending.
type DashboardImage struct {
	Repository string            `json:"repository"`
	Tag        string            `json:"tag"`
	Digest     string            `json:"digest"`
	Updated    time.Time         `json:"updated"`
	Regions    map[string]string `json:"regions"`
}

// dashboardImages bounds the image matrix.
const dashboardImages = 50

func (a *API) dashboard(ctx context.Context, _ *http.Request) (any, error) {
	all, err := a.replications(ctx)
	if err != nil {
		return nil, err
	}
	// By name: the page looks the same whichever region answers.
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	out := Dashboard{Region: a.region.Name(), Lag: map[string]map[string]DashboardLag{}, At: time.Now().UTC()}
	statuses := make([]*replicate.Status, len(all))
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, rep := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			defer cancel()
			if rep.Source == "self" {
				st, err := a.ownStatus(sctx, nil)
				if err == nil {
					s := st.(replicate.Status)
					statuses[i] = &s
				}
				errs[i] = err
				return
			}
			statuses[i], errs[i] = a.remoteStatus(sctx, rep.Name, rep.Endpoint)
		}()
	}
	wg.Wait()
	for i, rep := range all {
		dr := DashboardRegion{Name: rep.Name, Endpoint: rep.Endpoint, Routing: rep.RegionEndpointEnabled, State: replicate.StateDown}
		if st := statuses[i]; st != nil {
			dr.State, dr.Pushes = st.State, "yes"
			if !st.Writable {
				dr.Pushes, dr.Error = "pulls only", st.NotWritable
			}
			lag := map[string]DashboardLag{}
			for _, p := range st.Peers {
				lag[p.Peer] = DashboardLag{State: p.State, EventsBehind: p.Behind, BacklogBytes: p.Backlog,
					OldestUnappliedSeconds: p.OldestUnappliedSeconds, LastLagSeconds: p.LagSeconds, Wedged: p.Wedged}
			}
			out.Lag[rep.Name] = lag
		} else {
			if rep.State == replicate.StateCreating {
				dr.State = replicate.StateCreating
			}
			if errs[i] != nil {
				dr.Error = errs[i].Error()
			}
		}
		st := statuses[i]
		dr.Routed = effectiveRouting(dr.Routing, st != nil, dr.State, st == nil || st.Writable)
		out.Regions = append(out.Regions, dr)
	}
	tags, err := a.region.RecentTags(ctx, dashboardImages)
	if err != nil {
		return nil, err
	}
	out.Images = []DashboardImage{}
	for _, t := range tags {
		present, err := a.region.Presence(ctx, t.Repo, t.Digest)
		if err != nil {
			return nil, err
		}
		img := DashboardImage{Repository: t.Repo, Tag: t.Name, Digest: t.Digest.String(), Updated: t.Updated, Regions: map[string]string{}}
		for _, rep := range all {
			img.Regions[rep.Name] = "pending"
			if _, ok := present[rep.Name]; ok {
				img.Regions[rep.Name] = "present"
			}
		}
		out.Images = append(out.Images, img)
	}
	if out.Repositories, err = a.region.TagCounts(ctx, 500); err != nil {
		return nil, err
	}
	if out.Repositories == nil {
		out.Repositories = []meta.RepoCount{}
	}
	if out.Deleted, err = a.region.RecentlyDeleted(ctx, dashboardImages); err != nil {
		return nil, err
	}
	return out, nil
}

// effectiveRouting says what the front door does with a region, as it
// decides (route: routing on, healthy, Ready; pushes only where writable):
// "on", "pulls only", or "off" with why.
func effectiveRouting(enabled, answered bool, state string, writable bool) string {
	switch {
	case !enabled:
		return "off: turned off"
	case !answered:
		return "off: down"
	case state != replicate.StateReady:
		return "off: " + strings.ToLower(state)
	case !writable:
		return "pulls only"
	}
	return "on"
}
