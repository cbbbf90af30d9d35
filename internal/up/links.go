package up

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/ocierr"
)

// LinkState is one simulated link between two regions as the links
// control reports it: replication traffic from From to To (requests and
// their answers) goes over it.
type LinkState struct {
	From      string        `json:"from"`
	To        string        `json:"to"`
	Fault     string        `json:"fault"`
	Latency   time.Duration `json:"latencyNs"` // one way
	Bandwidth int64         `json:"bandwidthBytesPerSecond"`
	// ToTarget and ToClient are the bytes delivered so far each way.
	ToTarget int64 `json:"bytesToTarget"`
	ToClient int64 `json:"bytesToClient"`
}

// LinkChange is what `georeg link set` asks: put Fault on every link
// between Region and To (both directions), or on every link of Region when
// To is empty; Bandwidth, when above 0, throttles them too.
type LinkChange struct {
	Region    string `json:"region"`
	To        string `json:"to,omitempty"`
	Fault     string `json:"fault"`
	Bandwidth int64  `json:"bandwidthBytesPerSecond,omitempty"`
}

// LinksChanged is the answer to a change: the links it changed.
type LinksChanged struct {
	Changed []LinkState `json:"changed"`
}

// chosenLinks returns the pairs (from, to) a change applies to, ordered
// by from, then to: every pair with region at one end and, when to is set,
// to at the other. An unknown region or a change that matches no link is
// an error that names what exists.
func chosenLinks(pairs [][2]string, region, to string) ([][2]string, error) {
	known := map[string]bool{}
	for _, p := range pairs {
		known[p[0]], known[p[1]] = true, true
	}
	for _, name := range []string{region, to} {
		if name != "" && !known[name] {
			return nil, fmt.Errorf("no simulated link touches region %q (regions with links: %v)", name, slices.Sorted(maps.Keys(known)))
		}
	}
	if region == "" {
		return nil, fmt.Errorf("name the region whose links change")
	}
	if region == to {
		return nil, fmt.Errorf("a region has no link to itself (%s)", region)
	}
	var out [][2]string
	for _, p := range pairs {
		if (p[0] == region && (to == "" || p[1] == to)) || (p[1] == region && (to == "" || p[0] == to)) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePairs)
	return out, nil
}

// comparePairs orders links by from, then to.
func comparePairs(a, b [2]string) int {
	return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
}

// pairs returns the (from, to) of every simulated link, ordered by from,
// then to.
func (r *Registry) pairs() [][2]string {
	return slices.SortedFunc(maps.Keys(r.proxies), comparePairs)
}

// Links returns the state of every simulated link, ordered by from, to.
func (r *Registry) Links() []LinkState {
	out := make([]LinkState, 0, len(r.proxies))
	for _, p := range r.pairs() {
		out = append(out, r.linkState(p))
	}
	return out
}

func (r *Registry) linkState(p [2]string) LinkState {
	proxy := r.proxies[p]
	shape := proxy.Shape()
	toTarget, toClient := proxy.Delivered()
	return LinkState{From: p[0], To: p[1], Fault: proxy.Fault().String(), Latency: shape.Latency,
		Bandwidth: shape.Bandwidth, ToTarget: toTarget, ToClient: toClient}
}

// ChangeLinks applies c and returns the links it changed.
func (r *Registry) ChangeLinks(c LinkChange) ([]LinkState, error) {
	f, err := link.ParseFault(c.Fault)
	if err != nil {
		return nil, err
	}
	if c.Bandwidth < 0 {
		return nil, fmt.Errorf("bandwidth %d: want 0 (unchanged) or more", c.Bandwidth)
	}
	chosen, err := chosenLinks(r.pairs(), c.Region, c.To)
	if err != nil {
		return nil, err
	}
	out := make([]LinkState, 0, len(chosen))
	for _, p := range chosen {
		if c.Bandwidth > 0 {
			r.proxies[p].Throttle(c.Bandwidth)
		}
		r.proxies[p].Set(f)
		out = append(out, r.linkState(p))
	}
	return out, nil
}

// LinksHandler serves the links control of `georeg up` (`georeg link`):
// GET /links lists every simulated link, POST /links applies a
// LinkChange. Bad changes get 400 REQUEST_INVALID saying why, in the
// error envelope of the management API.
func (r *Registry) LinksHandler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /links", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, r.Links())
	})
	mux.HandleFunc("POST /links", func(w http.ResponseWriter, req *http.Request) {
		var c LinkChange
		dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			ocierr.Write(w, req, ocierr.RequestInvalid.Withf("a link change is JSON {region, to, fault, bandwidthBytesPerSecond}: %v", err))
			return
		}
		changed, err := r.ChangeLinks(c)
		if err != nil {
			ocierr.Write(w, req, ocierr.RequestInvalid.Withf("%v", err))
			return
		}
		reply(w, http.StatusOK, LinksChanged{Changed: changed})
	})
	return mux
}
