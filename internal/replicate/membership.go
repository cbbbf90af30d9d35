package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/peerauth"
)

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

// IsMember reports whether name is a region of the registry as this
// region knows it: a configured peer, or a registered replica (Ready or
// still backfilling) that has not been deleted. Only members' tokens are
// accepted (peerauth.Verifier): deleting a region revokes its tokens at
// once.
func (p *Replicator) IsMember(ctx context.Context, name string) bool {
	for _, s := range p.static {
		if s.Name == name {
			return true
		}
	}
	_, err := p.region.Setting(ctx, ReplicaKind, name)
	return err == nil
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

// register writes this region's own replica setting (its endpoint, routing
// on) when this region has never heard of one: every region of a registry
// is then in the replicated replica settings, so a region configured with
// one peer learns every region from that peer and follows them all. A
// region deleted from the registry (a tombstone) or retired does not
// register again. It reports whether there is nothing more to do.
func (p *Replicator) register(ctx context.Context) bool {
	if p.endpoint == "" || p.region.Retired() {
		return true
	}
	_, found, err := p.region.SettingRecord(ctx, ReplicaKind, p.region.Name())
	if err != nil {
		return false
	}
	if found {
		return true
	}
	value, _ := json.Marshal(ReplicaSetting{Endpoint: p.endpoint, RegionEndpointEnabled: true, Created: time.Now().UTC()})
	if _, err := p.region.PutSetting(ctx, ReplicaKind, p.region.Name(), value); err != nil {
		p.log.WarnContext(ctx, "register this region in the registry's replica settings", "error", err)
		return false
	}
	p.log.InfoContext(ctx, "registered this region", "endpoint", p.endpoint)
	return true
}

// announce makes this region a member as peer knows the registry, when
// it is not yet one (the peer refuses its token): it registers itself
// there as `georeg serve --join` does. A region configured with one peer,
// or that learned a region the registration has not reached yet, is so
// accepted by each region it follows. A region deleted from the registry
// cannot register itself again (the peer refuses: an admin must create
// it).
func (p *Replicator) announce(ctx context.Context, s *source) error {
	if p.endpoint == "" {
		return errors.New("this region has no replication endpoint to register")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"endpoint": p.endpoint})
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.base+peerauth.JoinPath+p.region.Name(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	if err := p.signer.Authorize(ctx, req, s.name); err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("register this region at %s: %w", s.name, ocierr.Read(resp))
	}
	p.log.InfoContext(ctx, "registered this region at a peer that did not know it", "peer", s.name)
	return nil
}

// required returns the peers of want this region must have caught up with
// to be Ready: the configured ones, and registered regions that have been
// Ready, known by their Ready mark (replicated settings) or by their own
// word (a feed answer says so: the mark may not have arrived yet). A
// registered region without a mark is waited for until its feed first
// answered or failed: it may be Ready with its mark still on the way. One
// still joining, as this one may be, is not waited for after that.
func (p *Replicator) required(ctx context.Context, want []Peer) (map[string]bool, error) {
	out := map[string]bool{}
	for _, s := range p.static {
		out[s.Name] = true
	}
	settings, err := p.region.Settings(ctx, ReplicaKind)
	if err != nil {
		return nil, err
	}
	ready := map[string]bool{}
	for _, s := range settings {
		var v ReplicaSetting
		if json.Unmarshal(s.Value, &v) == nil && v.Ready {
			ready[s.Name] = true
		}
	}
	t := p.tracker
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, w := range want {
		if ready[w.Name] || requiredPeer(t.peers[w.Name]) {
			out[w.Name] = true
		}
	}
	return out, nil
}

// requiredPeer decides, for a registered region without a Ready mark here,
// from what its follower heard (pp; nil: nothing yet), whether this region
// waits for it: until its feed first answered or failed, and then if it
// said it has been Ready.
func requiredPeer(pp *peerProgress) bool {
	if pp == nil || (!pp.Seen && !pp.FeedDown) {
		return true
	}
	return pp.PeerReady
}

// syncSettings reads every setting of peer s and applies each last-writer-
// wins, retrying with backoff until it succeeds or ctx ends: a follower
// does it first, so the region knows every region (and webhook, user...)
// the peer knows before it says it caught up with the peer. A peer's feed
// holds only the settings it changed itself; this brings the others.
func (p *Replicator) syncSettings(ctx context.Context, s *source, log *slog.Logger) bool {
	b := backoff{limit: peerRetryMax}
	announced := false
	for ctx.Err() == nil {
		err := p.repairSettings(ctx, s)
		if err == nil {
			p.tracker.settingsSynced(s.name, s.base)
			return true
		}
		if ocierr.Unauthorized.Is(err) && !announced {
			// Not a member there yet: register, then read again at once.
			// The peer answered: this is no failure of its feed (a region
			// waits for a peer until its feed first answered or failed).
			aerr := p.announce(ctx, s)
			if aerr == nil {
				announced = true
				continue
			}
			err = fmt.Errorf("%w (and registering this region there failed: %w)", err, aerr)
		}
		p.tracker.feedFailed(s.name, s.base, fmt.Errorf("read settings: %w", err))
		if !b.wait(ctx, log, "read the peer's settings", err) {
			return false
		}
	}
	return false
}

// announceReady marks this region's own replica setting ready once its
// state is Ready (see ReplicaSetting.Ready), when it is not marked. It
// reports whether the setting is marked.
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
	// At the least version after the one read: an admin's change of this
	// setting made meanwhile in another region (a new endpoint, routing
	// off) wins over the mark and is kept; the next round reads it and
	// marks it again.
	stored, err := p.region.PutSettingAfter(ctx, ReplicaKind, p.region.Name(), value, s.Version)
	if err != nil {
		p.log.WarnContext(ctx, "announce ready", "error", err)
		return false
	}
	if !stored {
		return false // changed since it was read: marked next round
	}
	p.log.InfoContext(ctx, "region is Ready: it has caught up with every region")
	return true
}
