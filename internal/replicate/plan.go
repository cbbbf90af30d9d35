package replicate

import (
	"errors"
	"net"
	"time"

	"github.com/georeg/georeg/internal/bounded"
	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/region"
)

// The replicator's decisions, apart from I/O: what to do with a feed
// record given what the region holds, where to fetch a blob from next,
// when a failing record is parked. The executors (apply.go, follow.go,
// parked.go) gather the facts, call these, and carry the decision out.

// local is what this region holds of the object a record names, read
// before the record is planned.
type local struct {
	ManifestLive bool         // the manifest is stored and live
	Tombstone    *hlc.Version // the newest delete of the object held here (a blob's: read only when its bytes are not)
	ContentHeld  bool         // a blob's bytes are in the content store
	ContentSize  int64        // their size, when held
	OnDemand     bool         // the repository's blobs are held only where pulled (region/ondemand.go)
}

// action is what applying a record takes.
type action int

const (
	// actSkip: nothing to do but move the cursor (a delete at least as
	// new is held here).
	actSkip action = iota
	// actFetch: fetch the content from a peer, then store it.
	actFetch
	// actStore: the content is here; store (link) it.
	actStore
	// actHeld: the manifest is stored already; record that the peer holds
	// it and move its version forward.
	actHeld
	// actApply: a change with no content (a delete, an ack, a setting, a
	// tag whose manifest is handled first): apply it.
	actApply
)

var actionNames = []string{"skip", "fetch", "store", "held", "apply"}

func (a action) String() string { return actionNames[a] }

// keptOnDemand reports whether a blob of size bytes of an on-demand
// repository is held in every region: one small enough that a feed
// record carries its bytes (region.InlineMax: a config). A follower
// keeps the bytes its record carried (planRecord); a region joining
// from a snapshot fetches the blobs this admits (loadRepo).
func keptOnDemand(size int64) bool { return size > 0 && size <= region.InlineMax }

// planRecord decides what applying rec takes, given l (invariants 3, 9).
func planRecord(rec meta.Record, l local) action {
	newer := func() bool { return l.Tombstone == nil || l.Tombstone.Less(rec.Version) }
	switch rec.Kind {
	case meta.KindBlob:
		switch {
		case l.ContentHeld:
			// Linked unless a delete at least as new is held: ApplyBlob
			// decides that in its transaction (holding reads no tombstone
			// for bytes that are here).
			return actStore
		case !newer():
			return actSkip
		case l.OnDemand && rec.Data == nil:
			// Fetched when a client first reads it here; bytes that came
			// in the feed page (a small blob) are kept.
			return actSkip
		}
		return actFetch
	case meta.KindManifest:
		switch {
		case l.ManifestLive:
			return actHeld
		case !newer():
			return actSkip
		}
		return actFetch
	}
	return actApply
}

// fetchPlan chooses, for one blob, which region to fetch it from next.
// The origin (the peer whose record named it) holds it unless it was
// deleted there since; other peers are asked (HEAD) when worth it: first
// the ones nearer than the origin for a large blob (a nearer copy is
// cheaper), then all the others once an attempt failed (a copy elsewhere
// lets a stalled transfer resume from there, with a Range, since the
// staging upload is the digest's, not the peer's).
type fetchPlan struct {
	origin string
	order  []string         // every peer, nearest first
	size   int64            // the blob's size (-1: unknown)
	holds  map[string]bool  // asked: holds it (true) or not (false)
	failed map[string]int   // failed attempts per peer
	gone   map[string]bool  // answered 404: does not hold it (any more)
	errs   map[string]error // the last error of each peer
	// relay is the region to fetch through first (relayParent), "" for
	// none: asked once, before anything else; on any failure the plan
	// goes on as without it (the origin, or the nearest holder).
	relay string
}

// Bounds of one blob's fetch: each peer is tried at most twice per
// apply, and at most maxFetchAttempts times in all, before the record is
// retried later (or parked).
const (
	maxFailsPerPeer  = 2
	maxFetchAttempts = 6
)

func newFetchPlan(origin string, order []string, size int64) *fetchPlan {
	return &fetchPlan{origin: origin, order: order, size: size,
		holds: map[string]bool{}, failed: map[string]int{}, gone: map[string]bool{}, errs: map[string]error{}}
}

// step is what the fetch does next.
type step struct {
	ask   []string // peers to ask (HEAD) whether they hold the blob, first
	from  string   // the peer to fetch from; "" with no ask: give up
	relay bool     // from is the relay: ask it to relay the blob from the origin
}

// next decides the next step.
func (f *fetchPlan) next() step {
	attempts := 0
	for _, n := range f.failed {
		attempts += n
	}
	if attempts >= maxFetchAttempts {
		return step{}
	}
	if f.relay != "" && attempts == 0 && !f.gone[f.relay] {
		return step{from: f.relay, relay: true}
	}
	// Peers not asked yet that are worth asking now: nearer ones for a
	// large blob at first; all of them after a failure.
	var ask []string
	for _, p := range f.order {
		if p == f.origin {
			if attempts == 0 {
				break // beyond the origin: farther, not worth a round trip yet
			}
			continue
		}
		if _, asked := f.holds[p]; asked || f.gone[p] {
			continue
		}
		if attempts > 0 || f.size >= nearMin {
			ask = append(ask, p)
		}
	}
	if len(ask) > 0 {
		return step{ask: ask}
	}
	best, bestFails := "", maxFailsPerPeer
	consider := func(p string) {
		if f.gone[p] {
			return
		}
		if n := f.failed[p]; n < bestFails {
			best, bestFails = p, n
		}
	}
	for _, p := range f.order { // nearest first: ties go to the nearer
		if p == f.origin || f.holds[p] {
			consider(p)
		}
	}
	if best == "" && !f.gone[f.origin] && f.failed[f.origin] < maxFailsPerPeer && !contains(f.order, f.origin) {
		best = f.origin // an origin not among the current peers (removed since)
	}
	return step{from: best}
}

// asked records a peer's answer to whether it holds the blob.
func (f *fetchPlan) asked(peer string, holds bool) { f.holds[peer] = holds }

// failedFrom records that fetching from peer failed with err: a 404 means
// it does not hold the blob (any more); anything else counts against it.
func (f *fetchPlan) failedFrom(peer string, err error) {
	f.errs[peer] = err
	if errors.Is(err, errGone) {
		f.gone[peer] = true
		return
	}
	f.failed[peer]++
}

// lastErr is the error to report when the plan gives up: the origin's,
// else any.
func (f *fetchPlan) lastErr() error {
	if err, ok := f.errs[f.origin]; ok {
		return err
	}
	for _, p := range f.order {
		if err, ok := f.errs[p]; ok {
			return err
		}
	}
	return errGone
}

// allGone reports whether every peer that was asked or tried answered
// 404, the origin included: the blob was deleted everywhere it was.
func (f *fetchPlan) allGone() bool {
	if !f.gone[f.origin] {
		return false
	}
	for p, n := range f.failed {
		if n > 0 && !f.gone[p] {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// errClass says on which side an apply failed.
type errClass int

const (
	// errOther: a failure of this region's stores or of the record itself:
	// retried in place, never parked (everything else would fail too).
	errOther errClass = iota
	// errPeerSide: the peer could not give the content (it stalled, broke
	// off, refused, sent bytes that do not verify): parking the record
	// lets the records after it apply meanwhile.
	errPeerSide
)

// classify says on which side err arose.
func classify(err error) errClass {
	switch {
	case err == nil:
		return errOther
	case region.IsNoSpace(err), errors.Is(err, content.ErrWrite):
		return errOther
	case errors.Is(err, errPeer), errors.Is(err, bounded.ErrStalled), errors.Is(err, errGone),
		errors.Is(err, content.ErrDigestMismatch), errors.Is(err, content.ErrSizeMismatch), errors.Is(err, hlc.ErrFuture):
		return errPeerSide
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return errPeerSide
	}
	return errOther
}

// parkable reports whether a record of kind that has failed for
// failingFor with err is parked: only records that bring content (blob,
// manifest, tag: their order does not matter, invariant 3), only for
// failures on the peer's side, only after parkAfter.
func parkable(kind string, err error, failingFor, parkAfter time.Duration) bool {
	switch kind {
	case meta.KindBlob, meta.KindManifest, meta.KindTag:
	default:
		return false
	}
	return classify(err) == errPeerSide && failingFor >= parkAfter
}

// retryIn is the wait before attempt n (1-based) of something that keeps
// failing: 100 ms doubling to 30 s (the caller adds jitter).
func retryIn(n int) time.Duration {
	d := minBackoff
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}
