package mgmtapi

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/outbound"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/replicate"
)

// Replication is one region of the registry, as `georeg replication`
// shows it.
type Replication struct {
	Name                  string `json:"name"`
	Endpoint              string `json:"endpoint"`
	RegionEndpointEnabled bool   `json:"regionEndpointEnabled"`
	// RoutingVersion is the version of the replica setting that holds
	// regionEndpointEnabled (empty while it was never set): the front door
	// keeps, of the views several regions give, the latest one.
	RoutingVersion string            `json:"routingVersion,omitempty"`
	Source         string            `json:"source"` // self, config or registered
	Created        *time.Time        `json:"created,omitempty"`
	State          string            `json:"state"`            // show: Creating, Syncing, Ready or Down
	Status         *replicate.Status `json:"status,omitempty"` // show only: asked of the region itself
	StatusError    string            `json:"statusError,omitempty"`
	// Writable (list?status=true and show): the region takes pushes; false
	// while it is out of storage space and serves pulls only.
	Writable    *bool  `json:"writable,omitempty"`
	NotWritable string `json:"notWritable,omitempty"`
}

// StatusSource reports this region's replication status and retires
// regions deleted with --purge (replicate.Replicator).
type StatusSource interface {
	Status(ctx context.Context) (replicate.Status, error)
	RetireRegion(ctx context.Context, name, endpoint string) error
}

var regionNameRegexp = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// replications lists every region: this one, the configured peers, and
// the registered replicas.
func (a *API) replications(ctx context.Context) ([]Replication, error) {
	out := []Replication{}
	seen := map[string]bool{}
	for i, info := range a.regions {
		src := "config"
		if i == 0 {
			src = "self"
		}
		out = append(out, Replication{Name: info.Name, Endpoint: info.Endpoint, RegionEndpointEnabled: true, Source: src})
		seen[info.Name] = true
	}
	settings, err := a.region.Settings(ctx, replicate.ReplicaKind)
	if err != nil {
		return nil, err
	}
	for _, s := range settings {
		var v replicate.ReplicaSetting
		if json.Unmarshal(s.Value, &v) != nil {
			continue
		}
		if seen[s.Name] { // a configured region can still be switched off for routing
			for i := range out {
				if out[i].Name == s.Name {
					out[i].RegionEndpointEnabled = v.RegionEndpointEnabled
					out[i].RoutingVersion = s.Version.String()
				}
			}
			continue
		}
		created := v.Created
		state := replicate.StateCreating
		if v.Ready {
			state = replicate.StateReady
		}
		out = append(out, Replication{Name: s.Name, Endpoint: v.Endpoint, RegionEndpointEnabled: v.RegionEndpointEnabled,
			RoutingVersion: s.Version.String(), Source: "registered", Created: &created, State: state})
	}
	return out, nil
}

// listReplications lists every region; with ?status=true each region is
// asked for its state (at once, each bounded by peerGet's deadline) and
// whether it takes pushes. The front door reads the plain list, which
// asks no region.
func (a *API) listReplications(ctx context.Context, r *http.Request) (any, error) {
	all, err := a.replications(ctx)
	if err != nil || r.URL.Query().Get("status") != "true" {
		return all, err
	}
	var g errgroup.Group
	for i := range all {
		g.Go(func() error {
			a.fillStatus(ctx, &all[i])
			return nil
		})
	}
	_ = g.Wait()
	return all, nil
}

// fillStatus asks rep's region for its status and sets State and
// Writable from it (Down, or Creating for a region never Ready, when it
// does not answer).
func (a *API) fillStatus(ctx context.Context, rep *Replication) {
	if rep.Source == "self" && a.status != nil {
		st, err := a.status.Status(ctx)
		if err != nil {
			rep.StatusError = err.Error()
		} else {
			rep.Status = &st
		}
	} else if rep.Source == "self" {
		w, why := a.region.Writable()
		rep.Status = &replicate.Status{State: replicate.StateReady, Writable: w, NotWritable: why}
	} else {
		st, err := a.remoteStatus(ctx, rep.Name, rep.Endpoint)
		if err != nil {
			rep.StatusError = err.Error()
		} else {
			rep.Status = st
		}
	}
	switch {
	case rep.Status != nil:
		rep.State = rep.Status.State
		w := rep.Status.Writable
		rep.Writable, rep.NotWritable = &w, rep.Status.NotWritable
	case rep.State == replicate.StateCreating:
		// registered, never Ready: still coming up
	default:
		rep.State = replicate.StateDown
	}
}

func (a *API) showReplication(ctx context.Context, r *http.Request) (any, error) {
	name := r.PathValue("name")
	all, err := a.replications(ctx)
	if err != nil {
		return nil, err
	}
	for _, rep := range all {
		if rep.Name != name {
			continue
		}
		a.fillStatus(ctx, &rep)
		return rep, nil
	}
	return nil, ocierr.NameUnknown.Withf("there is no replication named %q; list them with GET /_georeg/v1/replications", name)
}

// remoteStatus asks a region for its own status.
func (a *API) remoteStatus(ctx context.Context, name, endpoint string) (*replicate.Status, error) {
	var st replicate.Status
	if err := a.peerGet(ctx, name, endpoint, "/_georeg/v1/status", 1<<20, &st); err != nil {
		return nil, err // no state: the caller says Down
	}
	return &st, nil
}

// putBody is what PUT /_georeg/v1/replications/{name} takes.
type putBody struct {
	Endpoint              string `json:"endpoint"`
	RegionEndpointEnabled *bool  `json:"regionEndpointEnabled"`
}

func (a *API) putReplication(ctx context.Context, r *http.Request) (any, error) {
	name := r.PathValue("name")
	if !regionNameRegexp.MatchString(name) {
		return nil, ocierr.NameInvalid.Withf("replication name %q: lower-case letters, digits and '-', starting with a letter", name)
	}
	if name == region.ReservedName {
		return nil, ocierr.NameInvalid.Withf("replication name %q is reserved (the front door's credential bears it); choose another", name)
	}
	var body putBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil {
		return nil, ocierr.ManifestInvalid.Withf("body: %v; send {\"endpoint\": \"http://host:port\", \"regionEndpointEnabled\": true}", err)
	}
	held, found, err := a.region.SettingRecord(ctx, replicate.ReplicaKind, name)
	if err != nil {
		return nil, err
	}
	if found && held.Deleted && a.isPeer != nil && a.isPeer(r) {
		// A region registering itself (peerauth.JoinPath): never one that
		// was deleted from the registry, whose tokens that deletion
		// revoked.
		return nil, ocierr.Denied.Withf("region %s was deleted from the registry and cannot register itself again; an admin can create it again (georeg replication create)", name)
	}
	all, err := a.replications(ctx)
	if err != nil {
		return nil, err
	}
	v := replicate.ReplicaSetting{RegionEndpointEnabled: true, Created: time.Now().UTC()}
	for _, rep := range all {
		if rep.Name == name {
			v.Endpoint, v.RegionEndpointEnabled = rep.Endpoint, rep.RegionEndpointEnabled
		}
	}
	// What the region's own setting holds beside the admin's fields is
	// kept: its Ready mark (sticky: an update of a configured region's
	// routing dropped it until the region wrote it again, and meanwhile a
	// region starting would not have counted it as Ready) and when it was
	// created. Not a deleted one's: created again, it starts Creating.
	var kept replicate.ReplicaSetting
	if found && !held.Deleted && json.Unmarshal(held.Value, &kept) == nil {
		v.Ready = kept.Ready
		if !kept.Created.IsZero() {
			v.Created = kept.Created
		}
	}
	if body.Endpoint != "" {
		v.Endpoint = body.Endpoint
	}
	if body.RegionEndpointEnabled != nil {
		v.RegionEndpointEnabled = *body.RegionEndpointEnabled
	}
	if !strings.HasPrefix(v.Endpoint, "http://") && !strings.HasPrefix(v.Endpoint, "https://") {
		return nil, ocierr.ManifestInvalid.Withf("endpoint %q: give the region's base URL, http(s)://host:port", v.Endpoint)
	}
	if a.peersTLS && !strings.HasPrefix(v.Endpoint, "https://") {
		return nil, ocierr.ManifestInvalid.Withf("endpoint %q: with auth on, regions talk over TLS: give its https:// URL", v.Endpoint)
	}
	if body.Endpoint != "" && (a.isPeer == nil || !a.isPeer(r)) {
		// An admin's word (a region registering itself holds the secret,
		// like the configuration): the endpoint must be one the outbound
		// policy lets this registry reach.
		if err := a.checkEndpoint(ctx, v.Endpoint); err != nil {
			return nil, err
		}
	}
	value, _ := json.Marshal(v)
	if _, err := a.region.PutSetting(ctx, replicate.ReplicaKind, name, value); err != nil {
		return nil, err
	}
	return a.showReplication(ctx, r)
}

// checkEndpoint refuses an endpoint whose host resolves to an address the
// outbound policy refuses (a region's requests to it would reach a
// metadata service or an internal host).
func (a *API) checkEndpoint(ctx context.Context, endpoint string) error {
	if a.outbound == nil {
		return nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() == "" {
		return ocierr.ManifestInvalid.Withf("endpoint %q: give the region's base URL, http(s)://host:port", endpoint)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil {
		return ocierr.ManifestInvalid.Withf("endpoint %q: its host does not resolve: %v", endpoint, err)
	}
	allow := a.outbound.Allowed(ctx)
	for _, ip := range addrs {
		if err := outbound.Check(ip, allow); err != nil {
			return ocierr.Denied.Withf("endpoint %s: %v", endpoint, err)
		}
	}
	return nil
}

func (a *API) deleteReplication(ctx context.Context, r *http.Request) (any, error) {
	name := r.PathValue("name")
	if name == a.region.Name() {
		return nil, ocierr.Denied.Withf("a region cannot delete itself; ask another region")
	}
	// A peer in this region's configuration stays its peer whatever the
	// registry's settings say (a configured region also registers itself,
	// so it has a setting too): deleting it here would change nothing
	// here and stop it everywhere else.
	for _, info := range a.regions { // itself is refused above
		if info.Name == name {
			return nil, ocierr.Denied.Withf("%s is a peer in this region's configuration file (replication.peers); remove it there, or ask a region that does not configure it", name)
		}
	}
	if r.URL.Query().Get("purge") == "true" {
		// Purge first, while the region's endpoint is known: if that fails,
		// nothing is deleted and the call can be repeated.
		s, err := a.region.Setting(ctx, replicate.ReplicaKind, name)
		if err != nil {
			return nil, err
		}
		var v replicate.ReplicaSetting
		if err := json.Unmarshal(s.Value, &v); err != nil || a.status == nil {
			return nil, ocierr.Unsupported.Withf("replication %s cannot be purged from here", name)
		}
		if err := a.status.RetireRegion(ctx, name, v.Endpoint); err != nil {
			return nil, ocierr.Unknown.Withf("replication %s was not deleted: purging its data at %s failed (%v); retry when it is reachable, or delete it without --purge", name, v.Endpoint, err)
		}
	}
	if _, err := a.region.DeleteSetting(ctx, replicate.ReplicaKind, name); err != nil {
		return nil, err
	}
	return map[string]string{"deleted": name}, nil
}
