package replicate

import (
	"context"
	"sort"
	"sync"
	"time"
)

// PeerStatus is how far this region has come with one peer's feed.
type PeerStatus struct {
	Peer        string    `json:"peer"`
	Endpoint    string    `json:"endpoint"`
	Head        int64     `json:"head"`         // the peer's newest record, as last seen
	Applied     int64     `json:"applied"`      // records of it applied here
	Behind      int64     `json:"eventsBehind"` // Head - Applied
	LagSeconds  float64   `json:"lagSeconds"`   // from the origin's commit to applied here, of the last record applied
	LastError   string    `json:"lastError,omitempty"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
}

// States of a region, as `replication show` reports them.
const (
	StateSyncing = "Syncing" // still catching up with some peer's feed since it started
	StateReady   = "Ready"   // has caught up with every peer once
)

// Status is this region's replication state.
type Status struct {
	State string       `json:"state"`
	Peers []PeerStatus `json:"peers"`
}

// tracker keeps the progress of each follower, safe for concurrent use.
type tracker struct {
	mu    sync.Mutex
	peers map[string]*peerProgress
	ready bool // sticky: once caught up with every peer, Ready stays
}

type peerProgress struct {
	endpoint    string
	head        int64
	seen        bool // a feed answer arrived since start
	lag         time.Duration
	lastErr     string
	lastSuccess time.Time
}

func newTracker() *tracker { return &tracker{peers: map[string]*peerProgress{}} }

func (t *tracker) get(peer, endpoint string) *peerProgress {
	pp, ok := t.peers[peer]
	if !ok {
		pp = &peerProgress{endpoint: endpoint}
		t.peers[peer] = pp
	}
	return pp
}

// fetched records a feed answer and the peer's head.
func (t *tracker) fetched(peer, endpoint string, head int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.get(peer, endpoint)
	pp.head, pp.seen, pp.lastErr, pp.lastSuccess = max(pp.head, head), true, "", time.Now()
}

// applied records that a record the origin committed at created is now
// applied here.
func (t *tracker) applied(peer, endpoint string, created time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.get(peer, endpoint)
	pp.lag, pp.lastErr, pp.lastSuccess = time.Since(created), "", time.Now()
}

// failed records the last error with a peer.
func (t *tracker) failed(peer, endpoint string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(peer, endpoint).lastErr = err.Error()
}

func (t *tracker) forget(peer string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.peers, peer)
}

// Status reports every current peer's progress and this region's state:
// Syncing until it has heard from every peer and applied all it heard of,
// once; Ready from then on.
func (p *Replicator) Status(ctx context.Context) (Status, error) {
	peers := p.peers()
	t := p.tracker
	t.mu.Lock()
	defer t.mu.Unlock()
	st := Status{State: StateSyncing, Peers: []PeerStatus{}}
	all := true
	for _, src := range peers {
		name := src.name
		pp, ok := t.peers[name]
		if !ok {
			pp = &peerProgress{endpoint: src.base} // not heard from yet
		}
		applied, err := p.region.Cursor(ctx, name)
		if err != nil {
			return st, err
		}
		ps := PeerStatus{Peer: name, Endpoint: pp.endpoint, Head: pp.head, Applied: applied,
			Behind: max(pp.head-applied, 0), LagSeconds: pp.lag.Seconds(), LastError: pp.lastErr, LastSuccess: pp.lastSuccess}
		if !pp.seen || ps.Behind > 0 {
			all = false
		}
		st.Peers = append(st.Peers, ps)
	}
	if all {
		t.ready = true
	}
	if t.ready {
		st.State = StateReady
	}
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Peer < st.Peers[j].Peer })
	return st, nil
}
