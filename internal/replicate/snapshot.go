package replicate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// Joining from a snapshot (docs/design.md): a region whose store holds
// nothing replicated yet loads one Ready peer's snapshot (its state, read
// in one transaction, and the feed positions it reflects) instead of
// replaying every region's feed from the start, and follows every feed
// from those positions.

// joiner makes a region join from a snapshot at most once: the followers
// of every peer wait for it before they follow their feeds.
type joiner struct {
	// turn is held through a whole join (a channel of one: a follower
	// whose context ends stops waiting for it).
	turn    chan struct{}
	decided bool // whether the store was empty was read
	empty   bool
	done    bool // a snapshot was loaded, or none is wanted
	// joined is the snapshot loaded, for status (read under its own lock:
	// turn is held through a whole join).
	resMu    sync.Mutex
	joined   *SnapshotJoin
	failures []string // snapshots that could not be used, and why
}

func (j *joiner) result() *SnapshotJoin {
	j.resMu.Lock()
	defer j.resMu.Unlock()
	if j.joined == nil && len(j.failures) == 0 {
		return nil
	}
	c := SnapshotJoin{}
	if j.joined != nil {
		c = *j.joined
	}
	c.Failed = append([]string(nil), j.failures...)
	return &c
}

// snapshotFetchers bounds the blob fetches of a join at once.
const snapshotFetchers = 16

// bootstrap runs before s's feed is followed: when this region holds
// nothing replicated yet and no follower loaded a snapshot, it loads s's.
// If s cannot give one (it has not been Ready, it is another version, it
// fails midway), this follower follows s's feed from the start, and the
// next follower tries its own peer; what both bring is applied by
// last-writer-wins, the same either way.
func (p *Replicator) bootstrap(ctx context.Context, s *source, log *slog.Logger) {
	j := &p.join
	select {
	case j.turn <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-j.turn }()
	if j.done {
		return
	}
	// Whether the store is empty is read once, at the first follower's
	// turn: when that follower's peer cannot give a snapshot it follows
	// the peer's feed, and the next follower must still try its own peer
	// although the store is no longer empty. A snapshot loaded over rows
	// of this region's own (those records, pushes meanwhile, deletes) is
	// merged by last-writer-wins, blob links against their tombstones too
	// (region.unlinkDeleted).
	if !j.decided {
		empty, err := p.region.Empty(ctx)
		if err != nil {
			log.WarnContext(ctx, "read whether the store is empty; following the feed", "error", err)
			return
		}
		j.decided, j.empty = true, empty
	}
	if !j.empty {
		j.done = true
		return
	}
	start := time.Now()
	st, err := p.joinFrom(ctx, s)
	if err != nil {
		if ctx.Err() == nil {
			if peerNotReady(err) {
				// Regions that start together, all empty (georeg up, a new
				// registry): none has a snapshot to give, and none needs one.
				log.InfoContext(ctx, "no snapshot to join from: the peer has not been Ready yet; following its feed from its start")
			} else {
				log.WarnContext(ctx, "join from a snapshot failed; following the peer's feed from its start", "error", err)
			}
			j.resMu.Lock()
			j.failures = append(j.failures, s.name+": "+err.Error())
			j.resMu.Unlock()
		}
		return
	}
	j.done = true
	took := time.Since(start).Round(time.Millisecond)
	j.resMu.Lock()
	j.joined = &SnapshotJoin{From: s.name, Repositories: st.repos, Manifests: st.manifests, BlobsFetched: st.fetched, At: time.Now().UTC(), Took: took.String()}
	j.resMu.Unlock()
	log.InfoContext(ctx, "joined from a snapshot", "repositories", st.repos, "manifests", st.manifests,
		"blobs fetched", st.fetched, "took", took)
}

// peerNotReady reports whether err is a peer's answer that it has never
// been Ready (feed.SnapshotNotReady), the one reason a snapshot is refused
// that is no fault.
func peerNotReady(err error) bool {
	var oe *ocierr.Error
	if !errors.As(err, &oe) || oe.Code != ocierr.Unavailable {
		return false
	}
	d, ok := oe.Detail.(map[string]any)
	return ok && d["state"] == feed.SnapshotNotReady
}

type joinStats struct{ repos, manifests, fetched int }

// joinFrom loads s's snapshot: kept in a temporary file first (the blob
// fetches of one repository must not hold the peer's response), then
// repository by repository, each one's blob bytes fetched (at most
// snapshotFetchers at once) before its rows are stored in one
// transaction; then every feed's cursor moves to the position the
// snapshot reflects.
func (p *Replicator) joinFrom(ctx context.Context, s *source) (joinStats, error) {
	var st joinStats
	resp, err := s.get(ctx, feed.SnapshotPath+"?format="+strconv.Itoa(meta.SnapshotFormat), nil)
	if err != nil {
		return st, err
	}
	f, err := os.CreateTemp("", "georeg-snapshot-*.ndjson")
	if err != nil {
		resp.Body.Close()
		return st, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	resp.Body.Close()
	if err != nil {
		return st, fmt.Errorf("read %s's snapshot: %w", s.name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return st, err
	}
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	dec.UseNumber()
	var h meta.SnapshotHeader
	if err := dec.Decode(&h); err != nil {
		return st, fmt.Errorf("%s's snapshot: %w", s.name, err)
	}
	switch {
	case !meta.SnapshotFormatRead(h.Format):
		return st, fmt.Errorf("%s's snapshot has format %d, this version reads formats 1 to %d: another version of georeg", s.name, h.Format, meta.SnapshotFormat)
	case h.Schema != meta.SchemaVersion():
		return st, fmt.Errorf("%s's store has schema %d, this one %d: another version of georeg", s.name, h.Schema, meta.SchemaVersion())
	case h.Region != s.name:
		return st, fmt.Errorf("the snapshot asked of %s says it is %s's", s.name, h.Region)
	}
	for {
		var line struct {
			meta.SnapshotRepo
			feed.SnapshotEnd
		}
		if err := dec.Decode(&line); err != nil {
			if errors.Is(err, io.EOF) {
				return st, fmt.Errorf("%s's snapshot ends without its end line: cut short", s.name)
			}
			return st, fmt.Errorf("%s's snapshot: %w", s.name, err)
		}
		if line.End {
			if line.Repositories != st.repos {
				return st, fmt.Errorf("%s's snapshot holds %d repositories, says %d", s.name, st.repos, line.Repositories)
			}
			break
		}
		n, err := p.loadRepo(ctx, s, &line.SnapshotRepo)
		if err != nil {
			return st, err
		}
		st.repos++
		st.fetched += n
		if m := line.Tables["manifests"]; m != nil {
			st.manifests += len(m.Rows)
		}
	}
	// The settings read before the snapshot may be older than it: a
	// setting changed in between is in the feeds before the positions the
	// cursors move to, and would never be applied here. Read them again
	// (any setting the snapshot reflects is in s's settings now).
	if err := p.repairSettings(ctx, s); err != nil {
		return st, fmt.Errorf("read %s's settings after its snapshot: %w", s.name, err)
	}
	positions := map[string]int64{s.name: h.Head}
	for origin, seq := range h.Applied {
		positions[origin] = seq
	}
	return st, p.region.StartFeedsAt(ctx, positions)
}

// loadRepo fetches the blob bytes repository sr links that are not here
// (from s, or nearer regions holding them), then stores its rows.
func (p *Replicator) loadRepo(ctx context.Context, s *source, sr *meta.SnapshotRepo) (int, error) {
	fetched := 0
	onDemand := p.region.OnDemand(ctx, sr.Repo)
	if blobs := sr.Tables["blobs"]; blobs != nil {
		di, si := -1, -1
		for i, c := range blobs.Columns {
			switch c {
			case "digest":
				di = i
			case "size":
				si = i
			}
		}
		if di < 0 || si < 0 {
			return 0, fmt.Errorf("snapshot of %s: blob links without digest or size", sr.Repo)
		}
		// Every row is read before any fetch starts: a bad row refuses
		// the repository with no fetch left running.
		type blobRow struct {
			d    digest.Digest
			size int64
		}
		want := make([]blobRow, 0, len(blobs.Rows))
		for _, row := range blobs.Rows {
			if len(row) <= max(di, si) {
				return 0, fmt.Errorf("snapshot of %s: a short blob row", sr.Repo)
			}
			ds, _ := row[di].(string)
			d, err := digest.Parse(ds)
			if err != nil {
				return 0, fmt.Errorf("snapshot of %s: blob %q: %w", sr.Repo, ds, err)
			}
			n, _ := row[si].(json.Number)
			size, err := n.Int64()
			if err != nil {
				return 0, fmt.Errorf("snapshot of %s: blob %s without a size", sr.Repo, d)
			}
			want = append(want, blobRow{d, size})
		}
		if onDemand {
			// Its manifests without their large blobs: a client's read
			// fetches those (region/ondemand.go), so no link names bytes
			// not here. A small blob (a config), whose bytes a feed record
			// carries and a follower keeps (planRecord), is kept here too:
			// a region that joins holds what one that followed holds.
			rows, small := blobs.Rows[:0], want[:0]
			for i, b := range want {
				if keptOnDemand(b.size) {
					rows, small = append(rows, blobs.Rows[i]), append(small, b)
				}
			}
			blobs.Rows, want = rows, small
			if len(rows) == 0 {
				delete(sr.Tables, "blobs")
			}
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(snapshotFetchers)
		var mu sync.Mutex
		for _, b := range want {
			g.Go(func() error {
				if _, ok, err := p.region.HasContent(gctx, b.d); err != nil || ok {
					return err
				}
				if err := p.fetchContent(gctx, s, sr.Repo, b.d, b.size, nil); err != nil {
					return fmt.Errorf("blob %s of %s: %w", b.d, sr.Repo, err)
				}
				mu.Lock()
				fetched++
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return fetched, err
		}
	}
	return fetched, p.region.LoadSnapshotRepo(ctx, sr)
}
