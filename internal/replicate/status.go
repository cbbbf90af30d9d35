package replicate

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/region"
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
	Bytes       int64     `json:"bytes"`        // blob bytes of its feed applied here
	BytesTotal  int64     `json:"bytesTotal"`   // blob bytes of its whole feed
	Backlog     int64     `json:"backlogBytes"` // blob bytes of it not yet applied here
	// Wedged: this region is behind the peer, the peer answers, and
	// nothing of it has applied for WedgedAfter.
	Wedged bool `json:"wedged,omitempty"`
	// Node is the node of this region that follows the peer now ("" when
	// none does, or none has said yet).
	Node string `json:"node,omitempty"`
}

// Progress sums every peer's: what this region has applied of all it
// follows, how fast blob bytes arrive, and how long the rest should take.
type Progress struct {
	Objects            int64   `json:"objects"`
	ObjectsTotal       int64   `json:"objectsTotal"`
	Bytes              int64   `json:"bytes"`
	BytesTotal         int64   `json:"bytesTotal"`
	RateBytesPerSecond float64 `json:"rateBytesPerSecond"`
	ETASeconds         float64 `json:"etaSeconds"`
}

// States of a region, as `replication show` reports them.
const (
	StateCreating = "Creating" // registered, has not answered yet
	StateSyncing  = "Syncing"  // still catching up with some peer's feed since it started
	StateReady    = "Ready"    // has caught up with every peer once
	StateDown     = "Down"     // was Ready, does not answer now
)

// Status is this region's replication state.
type Status struct {
	State    string       `json:"state"`
	Progress Progress     `json:"progress"`
	Peers    []PeerStatus `json:"peers"`
	// Wedged names the peers replication is stuck on; the front door's
	// deep probe counts a region with any as failing.
	Wedged []string `json:"wedged,omitempty"`
}

// tracker keeps the progress of each follower, safe for concurrent use.
type tracker struct {
	mu        sync.Mutex
	peers     map[string]*peerProgress
	following map[string]bool // peers this node follows now (holds the lease)
	ready     bool            // sticky: once caught up with every peer, Ready stays
	// Blob bytes applied since the first one after start, for the rate.
	firstApply time.Time
	bytes      int64
}

type peerProgress struct {
	Endpoint    string        `json:"endpoint"`
	Head        int64         `json:"head"`
	Seen        bool          `json:"seen"` // a feed answer arrived since the follower started
	Lag         time.Duration `json:"lag"`
	LastErr     string        `json:"lastError,omitempty"`
	LastSuccess time.Time     `json:"lastSuccess"`
	FeedDown    bool          `json:"feedDown,omitempty"` // the last feed request failed
	Progress    time.Time     `json:"progress"`           // last record applied, or when first tracked
}

func newTracker() *tracker {
	return &tracker{peers: map[string]*peerProgress{}, following: map[string]bool{}}
}

// follow records whether this node follows peer now.
func (t *tracker) follow(peer string, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if on {
		t.following[peer] = true
	} else {
		delete(t.following, peer)
	}
}

func (t *tracker) get(peer, endpoint string) *peerProgress {
	pp, ok := t.peers[peer]
	if !ok {
		pp = &peerProgress{Endpoint: endpoint, Progress: time.Now()}
		t.peers[peer] = pp
	}
	return pp
}

// fetched records a feed answer and the peer's head.
func (t *tracker) fetched(peer, endpoint string, head int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.get(peer, endpoint)
	pp.Head, pp.Seen, pp.LastErr, pp.LastSuccess, pp.FeedDown = max(pp.Head, head), true, "", time.Now(), false
}

// feedFailed records that a feed request to the peer failed: while it
// fails, replication from it is down, not wedged.
func (t *tracker) feedFailed(peer, endpoint string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.get(peer, endpoint)
	pp.LastErr, pp.FeedDown = err.Error(), true
}

// applied records that a record the origin committed at created is now
// applied here.
func (t *tracker) applied(peer, endpoint string, created time.Time, blobBytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.firstApply.IsZero() {
		t.firstApply = time.Now()
	}
	t.bytes += blobBytes
	pp := t.get(peer, endpoint)
	pp.Lag, pp.LastErr, pp.LastSuccess, pp.Progress = time.Since(created), "", time.Now(), time.Now()
}

// failed records the last error with a peer.
func (t *tracker) failed(peer, endpoint string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(peer, endpoint).LastErr = err.Error()
}

func (t *tracker) forget(peer string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.peers, peer)
}

// Status reports every current peer's progress and this region's state:
// Syncing until it has heard from every peer and applied all it heard of,
// once; Ready from then on. Byte counts come from each peer (its feed's
// blob sizes before and after what is applied here); a peer that does not
// answer within 2 s counts no bytes.
func (p *Replicator) Status(ctx context.Context) (Status, error) {
	peers := p.peers()
	stats := map[string]*feed.Stats{}
	for _, src := range peers {
		applied, err := p.region.Cursor(ctx, src.name)
		if err != nil {
			return Status{}, err
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if st, err := src.feed.Stats(sctx, applied); err == nil {
			stats[src.name] = st
		}
		cancel()
	}
	elsewhere := p.publishedProgress(ctx, peers)
	t := p.tracker
	t.mu.Lock()
	defer t.mu.Unlock()
	st := Status{State: StateSyncing, Peers: []PeerStatus{}}
	all := true
	for _, src := range peers {
		name := src.name
		pp, ok := t.peers[name]
		node := ""
		if t.following[name] {
			node = p.region.Node()
		}
		if e, found := elsewhere[name]; found && !t.following[name] {
			pp, ok, node = e.progress, true, e.node // another node of the region follows it
		}
		if !ok {
			pp = &peerProgress{Endpoint: src.base} // not heard from yet
		}
		applied, err := p.region.Cursor(ctx, name)
		if err != nil {
			return st, err
		}
		ps := PeerStatus{Peer: name, Node: node, Endpoint: pp.Endpoint, Head: pp.Head, Applied: applied,
			Behind: max(pp.Head-applied, 0), LagSeconds: pp.Lag.Seconds(), LastError: pp.LastErr, LastSuccess: pp.LastSuccess}
		if fs, ok := stats[name]; ok {
			ps.BytesTotal, ps.Bytes, ps.Backlog = fs.Bytes, fs.Bytes-fs.BytesAfter, fs.BytesAfter
			ps.Head = max(ps.Head, fs.Head)
			ps.Behind = max(ps.Head-applied, 0)
		}
		if !pp.Seen || ps.Behind > 0 {
			all = false
		}
		// Wedged: the peer's feed answers (a long-poll outstanding counts:
		// the last request did not fail) but nothing has applied for a while.
		if ps.Behind > 0 && pp.Seen && !pp.FeedDown && time.Since(pp.Progress) > p.wedgedAfter {
			ps.Wedged = true
			st.Wedged = append(st.Wedged, name)
		}
		st.Progress.Objects += min(applied, ps.Head)
		st.Progress.ObjectsTotal += ps.Head
		st.Progress.Bytes += ps.Bytes
		st.Progress.BytesTotal += ps.BytesTotal
		st.Peers = append(st.Peers, ps)
	}
	if !t.firstApply.IsZero() {
		if secs := time.Since(t.firstApply).Seconds(); secs > 0 {
			st.Progress.RateBytesPerSecond = float64(t.bytes) / secs
		}
		if left := st.Progress.BytesTotal - st.Progress.Bytes; left > 0 && st.Progress.RateBytesPerSecond > 0 {
			st.Progress.ETASeconds = float64(left) / st.Progress.RateBytesPerSecond
		}
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

// publish writes this node's progress with peer s every
// region.PublishInterval until ctx ends (the lease is lost or the node
// stops).
func (p *Replicator) publish(ctx context.Context, s *source) {
	p.region.PublishEvery(ctx, "peer_status", s.name, func() (any, bool) {
		p.tracker.mu.Lock()
		defer p.tracker.mu.Unlock()
		pp, ok := p.tracker.peers[s.name]
		if !ok {
			return nil, false
		}
		c := *pp // a copy: the tracker changes it under its lock
		return c, true
	})
}

// publishedProgress reads what other nodes published of the peers this
// node does not follow (several nodes only). A peer whose publisher went
// quiet shows no node following it.
func (p *Replicator) publishedProgress(ctx context.Context, peers []*source) map[string]published {
	out := map[string]published{}
	if !p.region.Shared() {
		return out
	}
	p.tracker.mu.Lock()
	var others []*source
	for _, src := range peers {
		if !p.tracker.following[src.name] {
			others = append(others, src)
		}
	}
	p.tracker.mu.Unlock()
	for _, src := range others {
		body, node, at, err := p.region.Published(ctx, "peer_status", src.name)
		if err != nil {
			continue
		}
		var pp peerProgress
		if json.Unmarshal([]byte(body), &pp) != nil {
			continue
		}
		if time.Since(at) > region.PublishedStale {
			pp.Seen = false
			pp.LastErr = fmt.Sprintf("no node of this region has followed %s for %s (node %s did last)", src.name, time.Since(at).Round(time.Second), node)
			node = ""
		}
		out[src.name] = published{progress: &pp, node: node}
	}
	return out
}

// published is another node's progress with a peer.
type published struct {
	progress *peerProgress
	node     string
}
