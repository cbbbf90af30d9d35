package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/region"
)

// Backoff bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// backoff sleeps between retries: 100 ms doubling to 30 s, with jitter.
// wake, when set, ends a sleep at once (the region's storage has space
// again, say: what failed for that may go on now).
type backoff struct {
	d    time.Duration
	wake func() <-chan struct{}
	// limit, when set, bounds the wait below maxBackoff: a peer's feed is
	// asked again at least this often, so replication resumes within it
	// once a link heals (one small request per limit to a peer that is
	// down is nothing).
	limit time.Duration
}

// peerRetryMax bounds the wait between requests to a peer's feed or
// settings that fail.
const peerRetryMax = 4 * time.Second

// wait logs the failure and sleeps; false when ctx ended meanwhile.
func (b *backoff) wait(ctx context.Context, log *slog.Logger, what string, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	d := b.step()
	log.WarnContext(ctx, what, "error", err, "retry_in", d)
	t := time.NewTimer(d + rand.N(d/2))
	defer t.Stop()
	var wake <-chan struct{}
	if b.wake != nil {
		wake = b.wake()
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-wake:
		b.reset()
		return true
	}
}

func (b *backoff) reset() { b.d = minBackoff }

// step returns the next wait (before jitter, which adds up to half) and
// doubles the one after, from minBackoff up to maxBackoff or limit.
func (b *backoff) step() time.Duration {
	ceiling := maxBackoff
	if b.limit > 0 {
		ceiling = min(b.limit, maxBackoff)
	}
	d := min(max(b.d, minBackoff), ceiling)
	b.d = min(d*2, ceiling)
	return d
}

// pagesAhead is how many fetched pages may wait to be applied.
const pagesAhead = 4

// follow applies peer s's feed, in order, until ctx ends. A fetcher keeps
// one feed request outstanding while the applier works, and starts the
// blob fetches of each page as it arrives, so a record waits for neither a
// round trip to the feed nor the blobs before it. The durable cursor moves
// only as records are applied.
func (p *Replicator) follow(ctx context.Context, s *source) {
	log := p.log.With("peer", s.name)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan *feed.Page, pagesAhead)
	var prefetches errgroup.Group
	prefetches.SetLimit(prefetchers)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(pages)
		p.fetchPages(ctx, s, log, pages, &prefetches)
	}()
	p.applyPages(ctx, s, log, pages)
	cancel()
	for range pages { // let the fetcher see the cancel and stop
	}
	<-done
	_ = prefetches.Wait()
}

// fetchPages long-polls s's feed from the applied cursor on and hands each
// page to pages, after starting the fetches of its blobs.
func (p *Replicator) fetchPages(ctx context.Context, s *source, log *slog.Logger, pages chan<- *feed.Page, prefetches *errgroup.Group) {
	if !p.syncSettings(ctx, s, log) {
		return
	}
	p.bootstrap(ctx, s, log) // a region that holds nothing yet joins from a snapshot
	b := backoff{limit: peerRetryMax}
	var since int64
	for ctx.Err() == nil {
		cursor, err := p.region.Cursor(ctx, s.name)
		if err == nil {
			since = cursor
			break
		}
		if !b.wait(ctx, log, "read cursor", err) {
			return
		}
	}
	// The first request does not wait: it learns the peer's head at once,
	// so this region's state is known without a long-poll's delay.
	wait := time.Duration(0)
	for ctx.Err() == nil {
		page, err := s.feed.Fetch(ctx, since, feed.DefaultLimit, wait)
		var compacted *feed.CompactedError
		if errors.As(err, &compacted) && compacted.Floor > since {
			// Away longer than the peer keeps records (its feed was
			// compacted past this region's cursor): repair from its state,
			// then follow from the floor.
			if since, err = p.rejoin(ctx, s, log, since, compacted.Floor); err != nil {
				if !b.wait(ctx, log, "repair after a compacted feed", err) {
					return
				}
			}
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				p.tracker.feedFailed(s.name, s.base, err)
			}
			if !b.wait(ctx, log, "fetch feed", err) {
				return
			}
			continue
		}
		b.reset()
		wait = p.wait
		p.tracker.fetched(s.name, s.base, page.Head, page.Ready, page.Records)
		if len(page.Records) == 0 {
			continue
		}
		for _, rec := range page.Records {
			if rec.Kind == meta.KindBlob && len(rec.Data) > 0 {
				// A small blob's bytes cross in the feed page itself.
				p.region.CountTraffic(region.TrafficReceived, s.name, int64(len(rec.Data)))
			}
			if rec.Kind == meta.KindBlob && rec.Digest.Validate() == nil && !p.region.OnDemand(ctx, rec.Repo) {
				// Failures are left to the ordered apply, which retries.
				prefetches.Go(func() error {
					v, _ := hlc.ParseVersion(rec.Version)
					if ok, err := p.region.BlobWanted(ctx, rec.Repo, rec.Digest, v); err == nil && ok {
						_ = p.fetchContent(ctx, s, rec.Repo, rec.Digest, rec.Size, rec.Data)
					}
					return nil
				})
			}
		}
		since = page.Records[len(page.Records)-1].Seq
		select {
		case pages <- page:
		case <-ctx.Done():
			return
		}
	}
}

// appliers bounds the records of one peer's feed applied at once, and
// applyAhead how far past the first record not yet applied the follower
// takes records (a record that keeps failing holds the cursor, and so
// what a restart applies again, to that many).
const (
	appliers   = 16
	applyAhead = 256
)

// applyPages applies the records of every page, a repository's in feed
// order, records of different repositories side by side (up to appliers
// at once: each is its own write, and writes waiting together share a
// commit, meta/batch.go), and a record of no repository (a setting) after
// every record before it and before any after it. Each record is retried
// until it applies, or, when it keeps failing for reasons on the peer's
// side (its content cannot be fetched), parked (plan.go: parkable) so the
// records after it apply meanwhile; runParked retries it. The peer's
// cursor moves over the records all applied (applyWindow).
func (p *Replicator) applyPages(ctx context.Context, s *source, log *slog.Logger, pages <-chan *feed.Page) {
	w := newApplyWindow()
	s.window.Store(w)
	slots := make(chan struct{}, appliers)
	var running sync.WaitGroup
	defer running.Wait()
	last := map[string]chan struct{}{} // each repository's latest record taken: closed once done
	for page := range pages {
		for _, rec := range page.Records {
			for w.ahead() >= applyAhead {
				select {
				case <-w.progress:
				case <-ctx.Done():
					return
				}
			}
			if rec.Repo == "" {
				running.Wait()
				w.take(rec.Seq)
				if !p.applyRecord(ctx, s, log, w, rec) {
					return
				}
				clear(last)
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			before := last[rec.Repo]
			mine := make(chan struct{})
			last[rec.Repo] = mine
			if len(last) > 4*appliers {
				forgetDone(last)
			}
			w.take(rec.Seq)
			running.Go(func() {
				defer func() { close(mine); <-slots }()
				if before != nil {
					select {
					case <-before:
					case <-ctx.Done():
						return
					}
				}
				p.applyRecord(ctx, s, log, w, rec)
			})
		}
	}
}

// forgetDone drops the repositories whose latest record is done.
func forgetDone(last map[string]chan struct{}) {
	for repo, done := range last {
		select {
		case <-done:
			delete(last, repo)
		default:
		}
	}
}

// applyRecord applies one record of s's feed, retrying until it applies
// or is parked; false when ctx ended first.
func (p *Replicator) applyRecord(ctx context.Context, s *source, log *slog.Logger, w *applyWindow, rec feed.Record) bool {
	b := backoff{wake: p.region.SpaceBack, limit: peerRetryMax}
	failingSince, reported := time.Time{}, false
	for {
		through := w.through(rec.Seq)
		err := p.apply(region.CursorThrough(ctx, through), s, rec.Meta())
		if err == nil {
			p.finished(ctx, s, w, rec, through, false)
			return true
		}
		p.tracker.failed(s.name, s.base, fmt.Errorf("apply %s %s seq %d: %w", rec.Kind, rec.Repo, rec.Seq, err))
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if ctx.Err() == nil && parkable(rec.Kind, err, time.Since(failingSince), p.parkAfter) {
			data, _ := json.Marshal(rec)
			through := w.through(rec.Seq)
			if perr := p.region.Park(region.CursorThrough(ctx, through), s.name, rec.Seq, data, err.Error()); perr == nil {
				log.WarnContext(ctx, "record parked: retried apart, the records after it go on", "seq", rec.Seq, "kind", rec.Kind, "repo", rec.Repo, "error", err)
				p.finished(ctx, s, w, rec, through, true)
				return true
			}
		}
		if !reported && time.Since(failingSince) >= p.wedgedAfter && ctx.Err() == nil {
			// Stuck on this record (not parkable: the cause is on
			// this side): tell the webhooks once; the retries go on.
			ferr := p.region.ReplicationFailed(ctx, s.name, rec.Repo, rec.Digest, rec.Tag,
				fmt.Errorf("cannot apply %s record %d from %s for %s: %w", rec.Kind, rec.Seq, s.name, time.Since(failingSince).Round(time.Second), err))
			reported = ferr == nil
		}
		if !b.wait(ctx, log, fmt.Sprintf("apply %s %s seq %d", rec.Kind, rec.Repo, rec.Seq), err) {
			return false
		}
	}
}

// finished counts record rec of s done (applied, or parked), its apply
// having moved the cursor to through, and when that left the cursor
// behind the records done with none still being applied, moves it over
// them.
func (p *Replicator) finished(ctx context.Context, s *source, w *applyWindow, rec feed.Record, through int64, parked bool) {
	prefix, behind := w.finish(rec.Seq, through)
	if parked {
		p.tracker.parked(s.name, s.base, prefix)
	} else {
		p.appliedRecord(s, rec, prefix)
	}
	if behind && p.region.Skip(region.CursorThrough(ctx, prefix), s.name, prefix, rec.Repo) == nil {
		w.wrote(prefix)
	}
}

// appliedRecord counts record rec of s applied, and every record of s up
// to through done.
func (p *Replicator) appliedRecord(s *source, rec feed.Record, through int64) {
	var blobBytes int64
	if rec.Kind == meta.KindBlob {
		blobBytes = rec.Size
	}
	p.tracker.applied(s.name, s.base, through, rec.Created, blobBytes)
	select {
	case s.applied <- struct{}{}:
	default:
	}
	p.metrics.Applied(s.name, rec.Kind, time.Since(rec.Created))
}

// parkedEvery is how often the parked records of a peer are looked at.
const parkedEvery = time.Second

// runParked retries the parked records of peer s until ctx ends, each
// with its own backoff (plan.go: retryIn). A record parked for
// WedgedAfter is reported once (the replication-failed webhook); its
// retries go on.
func (p *Replicator) runParked(ctx context.Context, s *source) {
	log := p.log.With("peer", s.name)
	t := time.NewTicker(parkedEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due, err := p.region.DueParked(ctx, s.name, 16)
		if err != nil {
			continue
		}
		for _, pk := range due {
			var rec feed.Record
			if err := json.Unmarshal(pk.Record, &rec); err != nil || rec.Validate() != nil {
				_ = p.region.Unpark(ctx, s.name, pk.Seq) // unreadable: nothing can apply it
				continue
			}
			// Parked, the record is done for the follower, whose window
			// says how far the cursor may move meanwhile.
			through := int64(0)
			if w := s.window.Load(); w != nil {
				through = w.through(rec.Seq)
			}
			err := p.apply(region.CursorThrough(ctx, through), s, rec.Meta())
			if err == nil {
				if uerr := p.region.Unpark(ctx, s.name, pk.Seq); uerr == nil {
					log.InfoContext(ctx, "parked record applied", "seq", pk.Seq, "kind", rec.Kind, "repo", rec.Repo, "attempts", pk.Attempts+1)
					p.appliedRecord(s, rec, through)
				}
				continue
			}
			if ctx.Err() != nil {
				return
			}
			reported := pk.Reported
			if !reported && time.Since(pk.ParkedAt) >= p.wedgedAfter {
				ferr := p.region.ReplicationFailed(ctx, s.name, rec.Repo, rec.Digest, rec.Tag,
					fmt.Errorf("cannot apply %s record %d from %s for %s: %w", rec.Kind, rec.Seq, s.name, time.Since(pk.ParkedAt).Round(time.Second), err))
				reported = ferr == nil
			}
			wait := retryIn(pk.Attempts + 1)
			next := time.Now().Add(wait + rand.N(wait/2+1))
			_ = p.region.ParkedFailed(ctx, s.name, pk.Seq, next, err.Error(), reported)
		}
	}
}
