package region

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/meta"
)

// Where an image is travels as marks, not acknowledgements
// (meta/presence.go): this region publishes how far it applied each
// peer's feed (AppliedMarks, in feed stats), and keeps what each peer
// published (RecordPeerApplied).

// AppliedMarks is how far this region has applied each peer's feed in
// order.
func (r *Region) AppliedMarks(ctx context.Context) (map[string]int64, error) {
	return r.db.AppliedMarks(ctx)
}

// PeerApplied returns what every peer published of how far it applied
// each origin's feed (region -> origin -> mark).
func (r *Region) PeerApplied(ctx context.Context) (map[string]map[string]meta.AppliedMark, error) {
	return r.db.PeerApplied(ctx)
}

// peerApplied is the last marks each peer published, as recorded by this
// node: an unchanged answer writes nothing.
type peerApplied struct {
	mu    sync.Mutex
	last  map[string]map[string]int64
	heard map[string]time.Time // when each peer's hearing was last written
}

// RecordPeerApplied records the marks peer published (how far it applied
// each origin's feed), and that it was heard from: an unchanged answer
// writes nothing unless the last write is older than heardEvery (feed
// compaction tells a region that is away from one that is quiet by it).
// When a mark moved, pushes made here waiting to be everywhere are
// checked again: the mark may be what completes one.
func (r *Region) RecordPeerApplied(ctx context.Context, peer string, marks map[string]int64, heardEvery time.Duration) error {
	r.applied.mu.Lock()
	same := maps.Equal(r.applied.last[peer], marks)
	fresh := time.Since(r.applied.heard[peer]) < heardEvery
	r.applied.mu.Unlock()
	if (same && fresh) || len(marks) == 0 {
		return nil
	}
	var moved bool
	err := r.db.Update(ctx, func(tx *meta.Tx) error {
		var err error
		moved, err = tx.SetPeerApplied(ctx, peer, marks, r.now())
		return err
	})
	if err != nil {
		return err
	}
	r.applied.mu.Lock()
	if r.applied.last == nil {
		r.applied.last = map[string]map[string]int64{}
	}
	r.applied.last[peer] = maps.Clone(marks)
	if r.applied.heard == nil {
		r.applied.heard = map[string]time.Time{}
	}
	r.applied.heard[peer] = time.Now()
	r.applied.mu.Unlock()
	if moved {
		return r.SweepEverywhere(ctx)
	}
	return nil
}
