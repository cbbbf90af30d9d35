package replicate

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/region"
)

// PeerStatus is how far this region has come with one peer's feed.
type PeerStatus struct {
	Peer     string `json:"peer"`
	Endpoint string `json:"endpoint"`
	// Required: this region is Ready only once it has caught up with the
	// peer (a configured region, or a registered one that has been Ready).
	Required bool `json:"required"`
	// State: "caught up" (applied all the peer had when first heard from
	// since this region started), "catching up", "unreachable" or "not
	// heard from yet".
	State      string  `json:"state"`
	Head       int64   `json:"head"`         // the peer's newest record, as last seen
	Applied    int64   `json:"applied"`      // records of it applied here
	Behind     int64   `json:"eventsBehind"` // Head - Applied
	LagSeconds float64 `json:"lagSeconds"`   // from the origin's commit to applied here, of the last record applied
	// OldestUnappliedSeconds is how far behind this region is now: the
	// age (since the origin committed it) of the oldest record of the
	// peer this region has fetched and not applied yet; 0 when it has
	// applied all it fetched.
	OldestUnappliedSeconds float64   `json:"oldestUnappliedSeconds,omitempty"`
	LastError              string    `json:"lastError,omitempty"`
	LastSuccess            time.Time `json:"lastSuccess,omitzero"`
	// Parked is how many of its records failed for reasons on its side
	// (content that could not be fetched) and are retried apart, the
	// records after them applied meanwhile; ParkedSince, the oldest.
	Parked      int64     `json:"parked,omitempty"`
	ParkedSince time.Time `json:"parkedSince,omitzero"`
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

// Peer states, as PeerStatus.State names them.
const (
	PeerCaughtUp    = "caught up"
	PeerCatchingUp  = "catching up"
	PeerUnreachable = "unreachable"
	PeerNotHeard    = "not heard from yet"
)

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
	StateSyncing  = "Syncing"  // still catching up with some region since it started
	StateReady    = "Ready"    // has caught up with every region once
	StateDown     = "Down"     // was Ready, does not answer now
)

// Status is this region's replication state.
type Status struct {
	State    string       `json:"state"`
	Progress Progress     `json:"progress"`
	Peers    []PeerStatus `json:"peers"`
	// Waiting names, while Syncing, each region this one has yet to catch
	// up with, and why ("westeurope: unreachable: ...").
	Waiting []string `json:"waiting,omitempty"`
	// Wedged names the peers replication is stuck on; the front door's
	// deep probe counts a region with any as failing.
	Wedged []string `json:"wedged,omitempty"`
	// Writable: the region takes pushes. False while it is out of storage
	// space (NotWritable says why): it serves pulls only, and the front
	// door sends pushes elsewhere.
	Writable    bool   `json:"writable"`
	NotWritable string `json:"notWritable,omitempty"`
	// StagedBytes counts the bytes of broken fetches kept to resume (a
	// fetch that found the storage full keeps none).
	StagedBytes int64 `json:"stagedBytes"`
	// Snapshot is how this node joined, when it joined from a peer's
	// snapshot (snapshot.go) since it started, or tried to.
	Snapshot *SnapshotJoin `json:"snapshot,omitempty"`
}

// SnapshotJoin is a join from a peer's snapshot.
type SnapshotJoin struct {
	From         string    `json:"from"`
	Repositories int       `json:"repositories"`
	Manifests    int       `json:"manifests"`
	BlobsFetched int       `json:"blobsFetched"`
	At           time.Time `json:"at"`
	Took         string    `json:"took"`
	// Failed names the peers whose snapshot could not be used, and why
	// (their feeds are followed from the start instead).
	Failed []string `json:"failed,omitempty"`
}

// tracker keeps the progress of each follower, safe for concurrent use.
type tracker struct {
	mu        sync.Mutex
	peers     map[string]*peerProgress
	following map[string]bool // peers this node follows now (holds the lease)
	ready     bool            // sticky: once caught up with every region, Ready stays
	everReady bool            // this region has been Ready before (region.EverReady), read once
	readRead  bool            // everReady was read
	// Blob bytes applied since the first one after start, for the rate.
	firstApply time.Time
	bytes      int64
}

type peerProgress struct {
	Endpoint string `json:"endpoint"`
	Head     int64  `json:"head"`
	// FirstHead is the peer's head at its first feed answer since the
	// follower started: caught up means applied up to it.
	FirstHead      int64         `json:"firstHead"`
	Seen           bool          `json:"seen"`           // a feed answer arrived since the follower started
	PeerReady      bool          `json:"peerReady"`      // a feed answer said the peer has been Ready
	SettingsSynced bool          `json:"settingsSynced"` // its settings were read since the follower started
	Lag            time.Duration `json:"lag"`
	LastErr        string        `json:"lastError,omitempty"`
	LastSuccess    time.Time     `json:"lastSuccess"`
	FeedDown       bool          `json:"feedDown,omitempty"` // the last request to it failed
	Progress       time.Time     `json:"progress"`           // last record applied, or when first tracked
	// Stats are the peer's byte counts, refreshed by the follower
	// (refreshStats): status never asks a peer itself.
	Stats   *feed.Stats `json:"stats,omitempty"`
	statsAt time.Time   // when Stats last arrived
	// OldestUnapplied is when the origin committed the oldest record
	// fetched and not applied yet (zero: none), the front of pending.
	OldestUnapplied time.Time `json:"oldestUnapplied,omitzero"`
	pending         []stamp   // fetched, not applied yet, in feed order
	fetched         int64     // the newest record fetched
	skips           int       // anti-entropy rounds skipped in a row (applying)
}

// stamp is a fetched record: its sequence number, its repository and
// when its origin committed it.
type stamp struct {
	seq     int64
	repo    string
	created time.Time
}

// done drops what is applied (or parked) up to seq from pending.
func (pp *peerProgress) done(seq int64) {
	i := 0
	for i < len(pp.pending) && pp.pending[i].seq <= seq {
		i++
	}
	pp.pending = pp.pending[i:]
	pp.refreshOldest()
}

// refreshOldest sets OldestUnapplied from the front of pending.
func (pp *peerProgress) refreshOldest() {
	pp.OldestUnapplied = time.Time{}
	if len(pp.pending) > 0 {
		pp.OldestUnapplied = pp.pending[0].created
	}
}

func newTracker() *tracker {
	return &tracker{peers: map[string]*peerProgress{}, following: map[string]bool{}}
}

// follow records whether this node follows peer now; a follower that
// starts hears from the peer afresh.
func (t *tracker) follow(peer string, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if on {
		t.following[peer] = true
		if pp, ok := t.peers[peer]; ok {
			pp.Seen, pp.SettingsSynced = false, false
			pp.pending = nil
			pp.refreshOldest()
		}
	} else {
		delete(t.following, peer)
		if pp, ok := t.peers[peer]; ok { // what it fetched is no longer waiting here
			pp.pending = nil
			pp.refreshOldest()
		}
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

// fetched records a feed answer, the peer's head, whether the peer says it
// has been Ready, and its records, now waiting to be applied.
func (t *tracker) fetched(peer, endpoint string, head int64, ready bool, recs []feed.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.get(peer, endpoint)
	for _, r := range recs {
		if n := len(pp.pending); n == 0 || r.Seq > pp.pending[n-1].seq {
			pp.pending = append(pp.pending, stamp{seq: r.Seq, repo: r.Repo, created: r.Created})
		}
		pp.fetched = max(pp.fetched, r.Seq)
	}
	pp.refreshOldest()
	pp.PeerReady = pp.PeerReady || ready
	if !pp.Seen {
		pp.FirstHead = head
	}
	pp.Head, pp.Seen, pp.LastErr, pp.LastSuccess, pp.FeedDown = max(pp.Head, head), true, "", time.Now(), false
}

// settingsSynced records that the peer's settings were read and applied.
func (t *tracker) settingsSynced(peer, endpoint string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(peer, endpoint).SettingsSynced = true
}

// feedFailed records that a request to the peer failed: while it fails,
// replication from it is down, not wedged.
func (t *tracker) feedFailed(peer, endpoint string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.get(peer, endpoint)
	pp.LastErr, pp.FeedDown = err.Error(), true
}

// feedDown reports whether the peer's follower has failed to reach it
// for at least d: its last request failed and nothing succeeded within d
// (one failed request after a success is not a peer down).
func (t *tracker) feedDown(peer string, d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp, ok := t.peers[peer]
	return ok && pp.FeedDown && time.Since(pp.LastSuccess) >= d
}

// applied records that record seq, which the origin committed at
// created, is now applied here.
func (t *tracker) applied(peer, endpoint string, seq int64, created time.Time, blobBytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.firstApply.IsZero() {
		t.firstApply = time.Now()
	}
	t.bytes += blobBytes
	pp := t.get(peer, endpoint)
	pp.Lag, pp.LastErr, pp.LastSuccess, pp.Progress = time.Since(created), "", time.Now(), time.Now()
	pp.done(seq)
}

// parked records that record seq of the peer was parked: the follower
// moved past it.
func (t *tracker) parked(peer, endpoint string, seq int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.get(peer, endpoint)
	pp.Progress = time.Now()
	pp.done(seq)
}

// failed records the last error with a peer.
func (t *tracker) failed(peer, endpoint string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(peer, endpoint).LastErr = err.Error()
}

// stats records the peer's byte counts.
func (t *tracker) stats(peer, endpoint string, st *feed.Stats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.get(peer, endpoint)
	pp.Stats, pp.statsAt = st, time.Now()
}

// relayCandidate reports whether the peer, followed since since, counts
// among the regions relays are chosen from now (relayCandidate in
// relay.go).
func (t *tracker) relayCandidate(peer string, since time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	var answered time.Time
	if pp, ok := t.peers[peer]; ok {
		answered = pp.statsAt
	}
	return relayCandidate(time.Now(), since, answered, relayAnsweredWithin)
}

// maxSkips bounds the anti-entropy rounds against a peer skipped in a
// row for a backlog: a feed that never drains does not stop anti-entropy.
const maxSkips = 10

// applying tells anti-entropy what the follower of peer is applying: the
// repositories of records fetched and not applied yet, and whether the
// peer's feed has records not even fetched yet (a backlog, whose
// repositories are not known: the round is skipped, at most maxSkips
// times in a row).
func (t *tracker) applying(peer string) (repos map[string]bool, backlog bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp, ok := t.peers[peer]
	if !ok || !t.following[peer] {
		return nil, false
	}
	repos = map[string]bool{}
	for _, s := range pp.pending {
		repos[s.repo] = true
	}
	backlog = pp.Seen && !pp.FeedDown && pp.Head > pp.fetched && pp.skips < maxSkips
	if backlog {
		pp.skips++
	} else {
		pp.skips = 0
	}
	return repos, backlog
}

func (t *tracker) forget(peer string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.peers, peer)
}

// statsEvery is how often a follower refreshes its peer's byte counts, and
// how long one request for them may take; statsSoonest is the least time
// between two refreshes that records applying ask for.
const (
	statsEvery   = 2 * time.Second
	statsSoonest = 250 * time.Millisecond
)

// refreshStats asks peer s for its feed's byte counts every statsEvery,
// and soon after records of it apply (s.applied: statsSoonest after the
// last refresh at the earliest, so a follower applying hundreds of
// records a second asks a few times a second, not once a record), until
// ctx ends; Status answers from what it recorded, from local state only:
// a peer that hangs slows this loop, never a status request (invariant
// 10).
func (p *Replicator) refreshStats(ctx context.Context, s *source) {
	t := time.NewTicker(statsEvery)
	defer t.Stop()
	var last time.Time
	for {
		if wait := statsSoonest - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		if applied, err := p.region.Cursor(ctx, s.name); err == nil {
			sctx, cancel := context.WithTimeout(ctx, statsEvery)
			asked := time.Now()
			if st, err := s.feed.Stats(sctx, applied); err == nil {
				s.observeRTT(time.Since(asked)) // a small request: about one round trip
				p.tracker.stats(s.name, s.base, st)
				if err := p.region.RecordPeerApplied(ctx, s.name, st.Applied, p.heardEvery()); err != nil && ctx.Err() == nil {
					p.log.WarnContext(ctx, "record the peer's applied marks", "peer", s.name, "error", err)
				}
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.applied:
		}
	}
}

// Status reports every peer's progress and this region's state, from local
// state only (no request to a peer: invariant 10). A region is Syncing
// until it has read the settings of every required peer (so it knows
// every region) and applied each one's feed up to the head the peer had
// when first heard from since start; Ready from then on. A region that
// has been Ready before (a restart) does not wait for a peer that does
// not answer: it is Ready once it caught up with the others.
func (p *Replicator) Status(ctx context.Context) (Status, error) {
	want, err := p.desired(ctx)
	if err != nil {
		return Status{}, err
	}
	if p.region.Retired() {
		want = nil
	}
	required, err := p.required(ctx, want)
	if err != nil {
		return Status{}, err
	}
	cursors := map[string]int64{}
	parked := map[string]int64{}
	parkedSince := map[string]time.Time{}
	for _, w := range want {
		if cursors[w.Name], err = p.region.Cursor(ctx, w.Name); err != nil {
			return Status{}, err
		}
		if parked[w.Name], parkedSince[w.Name], err = p.region.ParkedCount(ctx, w.Name); err != nil {
			return Status{}, err
		}
	}
	everReady := p.everReady(ctx)
	elsewhere := p.publishedProgress(ctx, want)
	t := p.tracker
	t.mu.Lock()
	st := Status{State: StateSyncing, Peers: []PeerStatus{}, Snapshot: p.join.result()}
	st.Writable, st.NotWritable = p.region.Writable()
	st.StagedBytes = p.region.PartialBytes()
	all := true
	for _, w := range want {
		name := w.Name
		pp, ok := t.peers[name]
		node := ""
		if t.following[name] {
			node = p.region.Node()
		}
		if e, found := elsewhere[name]; found && !t.following[name] {
			pp, ok, node = e.progress, true, e.node // another node of the region follows it
		}
		if !ok {
			pp = &peerProgress{Endpoint: strings.TrimSuffix(w.Endpoint, "/")} // not heard from yet
		}
		// A parked record is not applied: the cursor moved past it.
		applied := cursors[name] - parked[name]
		ps := PeerStatus{Peer: name, Node: node, Endpoint: pp.Endpoint, Required: required[name], Head: pp.Head, Applied: applied,
			Behind: max(pp.Head-applied, 0), LagSeconds: pp.Lag.Seconds(), LastError: pp.LastErr, LastSuccess: pp.LastSuccess,
			Parked: parked[name], ParkedSince: parkedSince[name]}
		if !pp.OldestUnapplied.IsZero() {
			ps.OldestUnappliedSeconds = max(time.Since(pp.OldestUnapplied).Seconds(), 0.001)
		}
		if fs := pp.Stats; fs != nil {
			ps.BytesTotal, ps.Bytes, ps.Backlog = fs.Bytes, fs.Bytes-fs.BytesAfter, fs.BytesAfter
			ps.Head = max(ps.Head, fs.Head)
			ps.Behind = max(ps.Head-applied, 0)
		}
		caughtUp := pp.Seen && pp.SettingsSynced && cursors[name] >= pp.FirstHead && parked[name] == 0
		switch {
		case caughtUp:
			ps.State = PeerCaughtUp
		case pp.FeedDown:
			ps.State = PeerUnreachable
		case pp.Seen:
			ps.State = PeerCatchingUp
		default:
			ps.State = PeerNotHeard
		}
		if ps.Required && !caughtUp && !(everReady && pp.FeedDown) {
			all = false
			reason := ps.State
			switch {
			case ps.State == PeerCatchingUp && parked[name] > 0 && cursors[name] >= pp.FirstHead:
				reason = fmt.Sprintf("catching up: %d records parked (content it could not give yet): %s", parked[name], pp.LastErr)
			case ps.State == PeerCatchingUp:
				reason = fmt.Sprintf("catching up: applied %d of %d records", applied, pp.FirstHead)
			case pp.LastErr != "":
				reason += ": " + pp.LastErr
			}
			st.Waiting = append(st.Waiting, name+": "+reason)
		}
		// Wedged: the peer's feed answers (a long-poll outstanding counts:
		// the last request did not fail) but nothing has applied for a while.
		oldParked := parked[name] > 0 && time.Since(parkedSince[name]) > p.wedgedAfter
		if (ps.Behind > 0 && pp.Seen && !pp.FeedDown && time.Since(pp.Progress) > p.wedgedAfter) || oldParked {
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
	becameReady := all && !t.ready
	if all {
		t.ready = true
	}
	if t.ready {
		st.State, st.Waiting = StateReady, nil
	}
	t.mu.Unlock()
	if becameReady && !everReady {
		if err := p.region.MarkReady(ctx); err != nil {
			p.log.WarnContext(ctx, "record that this region is Ready", "error", err)
		}
	}
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Peer < st.Peers[j].Peer })
	sort.Strings(st.Waiting)
	return st, nil
}

// everReady reports whether this region was Ready before it started
// (read once from the store).
func (p *Replicator) everReady(ctx context.Context) bool {
	t := p.tracker
	t.mu.Lock()
	done, v := t.readRead, t.everReady
	t.mu.Unlock()
	if done {
		return v
	}
	v, err := p.region.EverReady(ctx)
	if err != nil {
		return false
	}
	t.mu.Lock()
	t.everReady, t.readRead = v, true
	t.mu.Unlock()
	return v
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
func (p *Replicator) publishedProgress(ctx context.Context, peers []Peer) map[string]published {
	out := map[string]published{}
	if !p.region.Shared() {
		return out
	}
	p.tracker.mu.Lock()
	var others []string
	for _, w := range peers {
		if !p.tracker.following[w.Name] {
			others = append(others, w.Name)
		}
	}
	p.tracker.mu.Unlock()
	for _, name := range others {
		body, node, at, err := p.region.Published(ctx, "peer_status", name)
		if err != nil {
			continue
		}
		var pp peerProgress
		if json.Unmarshal([]byte(body), &pp) != nil {
			continue
		}
		if time.Since(at) > region.PublishedStale {
			pp.Seen = false
			pp.LastErr = fmt.Sprintf("no node of this region has followed %s for %s (node %s did last)", name, time.Since(at).Round(time.Second), node)
			node = ""
		}
		out[name] = published{progress: &pp, node: node}
	}
	return out
}

// published is another node's progress with a peer.
type published struct {
	progress *peerProgress
	node     string
}
