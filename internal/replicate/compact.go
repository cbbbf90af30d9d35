package replicate

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/georeg/georeg/internal/meta"
)

// Feed compaction (docs/design.md): a region deletes the records of its
// feed that every other region has applied, as each one published
// (meta.AppliedMark); a region that has not applied any of it for longer
// than the horizon no longer holds records back, and repairs from state
// when it is back (rejoin).

// DefaultFeedHorizon is how long a region that stopped applying a peer's
// feed holds the peer's records back.
const DefaultFeedHorizon = 7 * 24 * time.Hour

// DefaultCompactInterval is how often a region compacts its feed.
const DefaultCompactInterval = time.Minute

// compactionFloor is the seq through which self's feed may be deleted:
// the lowest mark, in self's feed, of the members (self left out) heard
// from within horizon (a region that answers but is stuck holds the
// records back: it is not away). A member that never published a mark
// holds everything (0): it may need the feed from its start. With no
// other member, nothing is compacted. Pure.
func compactionFloor(self string, members []string, marks map[string]map[string]meta.AppliedMark, now time.Time, horizon time.Duration) int64 {
	floor, counted := int64(math.MaxInt64), 0
	for _, m := range members {
		if m == self {
			continue
		}
		mk, ok := marks[m][self]
		if !ok {
			return 0
		}
		counted++
		heard := mk.Heard
		if heard.IsZero() {
			heard = mk.Updated
		}
		if now.Sub(heard) > horizon {
			continue // away longer than the horizon: it repairs when back
		}
		floor = min(floor, mk.Seq)
	}
	if counted == 0 {
		return 0
	}
	return floor
}

// compact compacts this region's feed every interval until ctx ends.
func (p *Replicator) compact(ctx context.Context) {
	t := time.NewTicker(p.compactInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := p.compactOnce(ctx); err != nil && ctx.Err() == nil {
			p.log.WarnContext(ctx, "compact the feed", "error", err)
		}
	}
}

// compactOnce deletes what every member has applied of this region's feed.
func (p *Replicator) compactOnce(ctx context.Context) error {
	want, err := p.desired(ctx)
	if err != nil {
		return err
	}
	members := make([]string, 0, len(want))
	for _, w := range want {
		members = append(members, w.Name)
	}
	marks, err := p.region.PeerApplied(ctx)
	if err != nil {
		return err
	}
	floor := compactionFloor(p.region.Name(), members, marks, time.Now(), p.feedHorizon)
	if floor <= 0 {
		return nil
	}
	n, reached, err := p.region.CompactFeed(ctx, floor, 100)
	if n > 0 {
		p.log.InfoContext(ctx, "feed compacted", "records", n, "through", reached)
	}
	return err
}

// rejoin follows s again after its feed was compacted past this region's
// cursor (since): an anti-entropy round that a backlog does not skip
// brings what the compacted records did (tags, manifests, tombstones,
// settings), then the cursor moves to the floor. It returns the cursor to
// follow from.
func (p *Replicator) rejoin(ctx context.Context, s *source, log *slog.Logger, since, floor int64) (int64, error) {
	log.WarnContext(ctx, "the peer's feed was compacted past this region's cursor: repairing from its state", "cursor", since, "floor", floor)
	for try := 1; ; try++ {
		round, err := p.antiEntropyRound(ctx, s.name, true)
		switch rejoinNext(try, round, err) {
		case rejoinFail:
			return since, err
		case rejoinAgain:
			t := time.NewTimer(rejoinBusyWait)
			select {
			case <-ctx.Done():
				t.Stop()
				return since, ctx.Err()
			case <-t.C:
			}
			continue
		}
		if err != nil || len(round.Busy) > 0 {
			log.WarnContext(ctx, "repaired from the peer's state after its feed was compacted, but not every repository: anti-entropy rounds go on with them",
				"failed", round.Failed, "busy", round.Busy, "error", err)
		}
		log.InfoContext(ctx, "repaired from the peer's state after its feed was compacted", "repositories", round.Differed, "applied", round.Applied)
		if err := p.region.StartFeedsAt(ctx, map[string]int64{s.name: floor}); err != nil {
			return since, err
		}
		return floor, nil
	}
}

// rejoinStep is what a rejoin does after a repair round.
type rejoinStep int

const (
	rejoinMove  rejoinStep = iota // move the cursor to the floor
	rejoinAgain                   // run the round again after rejoinBusyWait
	rejoinFail                    // fail: the rejoin is retried with backoff
)

// rejoinBusyTries bounds the rounds a rejoin runs while repositories are
// busy (records of them fetched before the feed answered "compacted" are
// still being applied), rejoinBusyWait apart.
const (
	rejoinBusyTries = 10
	rejoinBusyWait  = time.Second
)

// rejoinNext decides from a rejoin's try-th repair round and its error.
// A round that compared nothing (the peer's summaries or settings could
// not be read) fails. One that left repositories busy is run again, up
// to rejoinBusyTries. Otherwise the cursor moves, even past repositories
// whose repair failed: one broken repository must not stop the whole
// feed, and the periodic anti-entropy rounds compare them again (a
// repair works from state, not from the records skipped). Pure.
func rejoinNext(try int, round Round, err error) rejoinStep {
	switch {
	case err != nil && len(round.Failed) == 0:
		return rejoinFail
	case len(round.Busy) > 0 && try < rejoinBusyTries:
		return rejoinAgain
	}
	return rejoinMove
}

// heardEvery is how often an unchanged answer of a peer is recorded as
// heard: a tenth of the horizon, between 1 s and 1 h.
func (p *Replicator) heardEvery() time.Duration {
	return min(max(p.feedHorizon/10, time.Second), time.Hour)
}
