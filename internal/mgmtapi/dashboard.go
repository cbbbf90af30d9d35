package mgmtapi

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/replicate"
)

// Dashboard answers GET /_georeg/v1/dashboard, what the /ui/ page shows:
// every region with its state and routing, the replication lag between
// each pair, recent images with where each is, and the repositories.
type Dashboard struct {
	Region  string            `json:"region"` // the region that answered
	Regions []DashboardRegion `json:"regions"`
	// Lag[to][from] is the lag, in seconds, of the last change region to
	// applied from region from.
	Lag          map[string]map[string]float64 `json:"lag"`
	Images       []DashboardImage              `json:"images"`
	Repositories []meta.RepoCount              `json:"repositories"`
	At           time.Time                     `json:"at"`
}

// DashboardRegion is one region on the dashboard.
type DashboardRegion struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	State    string `json:"state"` // Creating, Syncing, Ready or Down
	Routing  bool   `json:"routing"`
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
	out := Dashboard{Region: a.region.Name(), Lag: map[string]map[string]float64{}, At: time.Now().UTC()}
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
			statuses[i], errs[i] = a.remoteStatus(sctx, rep.Endpoint)
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
			lag := map[string]float64{}
			for _, p := range st.Peers {
				lag[p.Peer] = p.LagSeconds
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
	return out, nil
}
