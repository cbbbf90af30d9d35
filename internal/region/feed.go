package region

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// feedNotifier wakes long-polling feed readers when records commit.
type feedNotifier struct {
	mu       sync.Mutex
	ch       chan struct{} // closed and replaced on every commit
	draining chan struct{} // closed when the node shuts down
	drained  bool
}

func newFeedNotifier() *feedNotifier {
	return &feedNotifier{ch: make(chan struct{}), draining: make(chan struct{})}
}

// Drain ends every feed long-poll now and makes later ones return at once:
// the node is shutting down, and a peer's long-poll must not hold up its
// graceful shutdown (the peer asks again, elsewhere or later).
func (r *Region) Drain() {
	n := r.feed
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.drained {
		n.drained = true
		close(n.draining)
	}
}

func (n *feedNotifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *feedNotifier) notify() {
	n.mu.Lock()
	close(n.ch)
	n.ch = make(chan struct{})
	n.mu.Unlock()
}

// record appends a feed record for a change this region originated, in
// the transaction of the change. The caller calls r.feed.notify after the
// transaction commits.
func (r *Region) record(ctx context.Context, tx *meta.Tx, kind, repo string, d digest.Digest, tag, mediaType string, size int64, v hlc.Version) error {
	return tx.AppendFeed(ctx, meta.Record{
		Kind: kind, Repo: repo, Digest: d, Tag: tag, MediaType: mediaType, Size: size,
		Version: v, Created: r.now(),
	})
}

// Feed returns up to n records after since. When there are none it waits
// up to wait for one to commit, so a peer long-polling the feed hears of a
// change within milliseconds rather than after a poll interval.
func (r *Region) Feed(ctx context.Context, since int64, n int, wait time.Duration) ([]meta.Record, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		changed := r.feed.wait() // before the read: a commit after it wakes us
		recs, err := r.db.Feed(ctx, since, n)
		if err != nil {
			return nil, err
		}
		if len(recs) > 0 {
			return recs, r.inline(ctx, recs)
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil, nil
		case <-r.feed.draining:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// InlineMax is the largest manifest or blob a feed record carries inline:
// a config blob or a manifest reaches a peer with the record, with no
// round trip of its own.
const InlineMax = 64 << 10

// inline fills in Data for small manifests and blobs still present (what
// was deleted since is left out; the peer then finds it gone), and the
// current value, version and tombstone of each setting record's key (a
// later state of the same key: last-writer-wins gives the same result).
// A setting that cannot be read fails the request (the peer asks again)
// rather than go out without its value.
func (r *Region) inline(ctx context.Context, recs []meta.Record) error {
	for i := range recs {
		rec := &recs[i]
		if rec.Kind == meta.KindSetting {
			s, err := r.db.SettingRecord(ctx, rec.MediaType, rec.Tag)
			if err != nil {
				return fmt.Errorf("setting %s/%s of feed record %d: %w", rec.MediaType, rec.Tag, rec.Seq, err)
			}
			rec.Data, rec.Version, rec.Deleted = s.Value, s.Version, s.Deleted
			continue
		}
		if rec.Size > InlineMax || rec.Size <= 0 {
			continue
		}
		switch rec.Kind {
		case meta.KindManifest:
			if m, err := r.GetManifest(ctx, rec.Repo, rec.Digest.String()); err == nil {
				rec.Data = m.Payload
			}
		case meta.KindBlob:
			if rc, err := r.store.Open(ctx, rec.Digest, 0); err == nil {
				data, err := io.ReadAll(io.LimitReader(rc, InlineMax+1))
				rc.Close()
				if err == nil && int64(len(data)) == rec.Size {
					rec.Data = data
				}
			}
		}
	}
	return nil
}

// FeedBytes returns the size of the blob records in this region's feed,
// all and after since.
func (r *Region) FeedBytes(ctx context.Context, since int64) (total, after int64, err error) {
	return r.db.FeedBytes(ctx, since)
}

// FeedHead returns the seq of the region's newest feed record.
func (r *Region) FeedHead(ctx context.Context) (int64, error) { return r.db.FeedHead(ctx) }
