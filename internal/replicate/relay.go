package replicate

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// Relay fan-out (docs/design.md "Relay fan-out"): a blob a region pushed
// is fetched from it by relayFanout regions only; every other region
// fetches it from the nearest of those, which fetches it from the origin
// once (its own fetch and the relayed one are one transfer) and streams
// it on as it arrives. So the origin serves relayFanout copies whatever
// the number of regions, and no region receives a blob twice.

// relayFanout is how many regions fetch a region's blobs from it directly.
const relayFanout = 2

// relayAnsweredWithin: a region's relay is asked only while it answered
// its stats request (every statsEvery) within this; a hung or cut-off
// relay costs at most this long of blob fetches that wait for it, each
// bounded like any peer request, and then none.
const relayAnsweredWithin = 3 * statsEvery

// relayCandidate decides whether a peer counts among the regions relays
// are chosen from, given when this region started following it and when
// it last answered its stats request (zero: not since): while its last
// answer is within d, or, before any, while the following started within
// d. Not judging a peer before its first answer had time to come
// matters: under load (and on shared stores, where a peer's follower
// first takes its lease) the first answers arrive seconds apart, and
// every region choosing relays among the few peers that had answered it
// (each its own few) fetched from the origin what the true relays
// fetched too. A peer down or hung from the start costs, for d, what a
// relay that fails costs anyway: a failed or bounded request, then the
// plan goes on without it.
func relayCandidate(now, since, answered time.Time, d time.Duration) bool {
	last := answered
	if last.IsZero() {
		last = since
	}
	return !last.IsZero() && now.Sub(last) < d
}

// relayFirst returns the regions that fetch origin's blobs from it
// directly: the first relayFanout of members (origin left out) in an
// order every region computes alike (by a hash of origin and name, so
// each origin's relays differ and the work spreads).
func relayFirst(origin string, members []string) []string {
	var others []string
	for _, m := range members {
		if m != origin && !slices.Contains(others, m) {
			others = append(others, m)
		}
	}
	key := func(name string) [32]byte { return sha256.Sum256([]byte(origin + "\x00" + name)) }
	slices.SortFunc(others, func(a, b string) int {
		ka, kb := key(a), key(b)
		if c := slices.Compare(ka[:], kb[:]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	if len(others) > relayFanout {
		others = others[:relayFanout]
	}
	return others
}

// relayParent returns the region self fetches origin's blobs through, ""
// when it fetches them from origin itself (it is one of relayFirst, or
// not a member). Of the relays it takes the nearest by measured round
// trip (rtt: ok false when not measured yet), else the first.
func relayParent(origin, self string, members []string, rtt func(string) (time.Duration, bool)) string {
	if self == origin || !slices.Contains(members, self) {
		return ""
	}
	relays := relayFirst(origin, members)
	if slices.Contains(relays, self) || len(relays) == 0 {
		return ""
	}
	best, bestRTT, measured := relays[0], time.Duration(0), false
	for _, r := range relays {
		d, ok := rtt(r)
		if ok && (!measured || d < bestRTT) {
			best, bestRTT, measured = r, d, true
		}
	}
	return best
}

// relayMembers is this region and every region it follows that answered
// its stats request lately, or is not judged yet (relayCandidate):
// relays are chosen among regions that answer, so a region registered
// but down (or hung) is nobody's relay.
// Two regions that see different regions answering may choose
// differently for a while; a region asked to relay that does not count
// itself as a relay refuses, and the asker fetches from the origin.
func (p *Replicator) relayMembers() []string {
	out := []string{p.region.Name()}
	for _, s := range p.peers() {
		if p.tracker.relayCandidate(s.name, s.since) {
			out = append(out, s.name)
		}
	}
	return out
}

// rttOf is a peer's measured round trip.
func (p *Replicator) rttOf(name string) (time.Duration, bool) {
	for _, s := range p.peers() {
		if s.name == name {
			d := s.rtt.Load()
			return time.Duration(d), d > 0
		}
	}
	return 0, false
}

// source returns the current peer named, or nil.
func (p *Replicator) source(name string) *source {
	for _, s := range p.peers() {
		if s.name == name {
			return s
		}
	}
	return nil
}

// RelayBlob makes blob d's bytes (of size bytes, of repo at origin) present
// in the content store here for a peer that fetches origin's blobs
// through this region, writing them to the writer start returns as they
// arrive when this call fetches them (streamed true). Only a region that
// fetches origin's blobs from origin itself relays (so a relay never
// waits on another relay); any other answers BLOB_UNKNOWN and the peer
// fetches from the origin. Bytes are verified before they are stored,
// and the peer verifies them again.
func (p *Replicator) RelayBlob(ctx context.Context, origin, repo string, d digest.Digest, size int64, start func(size int64) io.Writer) (streamed bool, err error) {
	src := p.source(origin)
	if src == nil || relayParent(origin, p.region.Name(), p.relayMembers(), p.rttOf) != "" {
		return false, ocierr.BlobUnknown.Withf("blob %s: this region does not relay %s's blobs", d, origin)
	}
	ctx = context.WithoutCancel(ctx) // the fetch is this region's too: it finishes
	defer p.region.Lease(d)()
	if _, ok, err := p.region.HasContent(ctx, d); ok || err != nil {
		return false, err
	}
	open := func(ctx context.Context, offset int64) (io.ReadCloser, error) {
		rc, err := src.blob(ctx, repo, d, offset)
		if err != nil {
			return nil, err
		}
		return p.counted(rc, region.TrafficReceived, src.name), nil
	}
	var hw *region.HoldLast
	var lw *region.LazyWriter
	var w io.Writer
	if start != nil {
		lw = &region.LazyWriter{Start: func() io.Writer { return start(size) }}
		hw = &region.HoldLast{W: lw}
		w = hw
	}
	_, err = p.region.FetchBlob(ctx, region.FetchStagingID(d), d, size, open, w)
	if err == nil && hw != nil {
		_ = hw.Release()
	}
	// Streamed means the asker got headers and bytes: a fetch that failed
	// before any reached it gets a clear error instead of a cut connection.
	streamed = lw != nil && lw.W != nil
	if errors.Is(err, errGone) {
		return streamed, ocierr.BlobUnknown.Withf("blob %s of %s: %s no longer has it", d, repo, origin)
	}
	return streamed, err
}
