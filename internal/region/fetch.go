package region

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
)

// FetchStagingID names the staging upload a fetch of blob d from peers
// writes to: one per digest, whichever peer serves it, so a fetch cut off
// from one region resumes from another with a Range.
func FetchStagingID(d digest.Digest) string { return "repl." + d.Encoded() }

// FetchBlob stores blob d of size bytes in the content store from a peer,
// verified as it streams; the caller links it with ApplyBlob or
// AdoptBlob. open returns the blob's bytes from an offset. Staging id
// keeps what arrived: when the transfer breaks, the next call resumes from
// there with a Range rather than starting over, so a 20 GiB layer never
// restarts from zero; that next call may open another region.
//
// When w is set, every byte of the blob is also written to it as it
// arrives, from the first (a read-through streaming to its client, a relay
// streaming to the region that asked); writes to w that fail are dropped
// and the fetch goes on. streamed reports whether bytes reached w: none
// do when the blob was already here, and a call that finds another
// fetching it follows that fetch's staging file (tailFetch) where it can.
//
// Invariant 1: one fetch per staging id runs at a time; a concurrent call
// for the same id (the feed follower and a read-through, say) waits for it
// and shares its result, or leaves when its own ctx ends (invariant 10:
// the fetch goes on for the others). Two writers on one staging file
// would each verify their own stream while the file interleaved both.
//
// Errors: content.ErrWrite (and STORAGE_FULL when the storage is full)
// for this region's side; anything else came from open's reader or is a
// verification failure of what the peer sent.
func (r *Region) FetchBlob(ctx context.Context, id string, d digest.Digest, size int64, open func(ctx context.Context, offset int64) (io.ReadCloser, error), w io.Writer) (streamed bool, err error) {
	f, led := r.startFetch(id)
	if !led {
		if w != nil && size > 0 {
			return r.tailFetch(ctx, id, d, size, f, w)
		}
		select {
		case <-f.done:
			return false, f.err
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	go func() {
		s, err := r.fetchBlob(ctx, id, d, size, open, w)
		r.endFetch(id, f, s, err)
	}()
	select {
	case <-f.done:
		return f.streamed, f.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (r *Region) fetchBlob(ctx context.Context, id string, d digest.Digest, size int64, open func(ctx context.Context, offset int64) (io.ReadCloser, error), w io.Writer) (bool, error) {
	kept, since := r.takePartial(id)
	if _, ok, err := r.HasContent(ctx, d); ok || err != nil {
		if kept != nil {
			_ = kept.Cancel(ctx)
		}
		return false, err // a fetch that just finished under another id stored it
	}
	up := kept
	if up == nil {
		var err error
		if up, err = r.store.Upload(ctx, id, d); err != nil {
			return false, r.NoteWrite(err)
		}
	}
	var tee io.Writer
	if w != nil {
		tee = &bestEffort{w: w}
		if up.Size() > 0 { // what an earlier, broken fetch kept
			rc, err := r.store.OpenUpload(ctx, id)
			if errors.Is(err, content.ErrNotReadable) {
				// The kept bytes cannot be read back (S3): start over, so
				// the client gets every byte.
				_ = up.Cancel(ctx)
				if up, err = r.store.Upload(ctx, id, d); err != nil {
					return false, r.NoteWrite(err)
				}
			} else if err != nil {
				r.keepPartial(ctx, id, up, since)
				return false, err
			} else {
				_, err = io.Copy(tee, io.LimitReader(rc, up.Size()))
				rc.Close()
				if err != nil {
					r.keepPartial(ctx, id, up, since)
					return true, err
				}
			}
		}
	}
	sp := r.startSpill(ctx, id, d, up)
	defer r.endSpill(id, sp)
	if size < 0 || up.Size() < size {
		rc, err := open(ctx, up.Size())
		if err != nil {
			r.keepPartial(ctx, id, up, since)
			return tee != nil && up.Size() > 0, err
		}
		var src io.Reader = rc
		if tee != nil {
			src = io.TeeReader(rc, tee)
		}
		if sp != nil {
			src = io.TeeReader(src, sp)
		}
		_, err = up.Append(ctx, src)
		rc.Close()
		if IsNoSpace(err) {
			// The storage is full: what arrived is released, not kept (a
			// full disk needs every byte back); the fetch starts over once
			// space is back.
			_ = up.Cancel(ctx)
			return tee != nil, fmt.Errorf("fetch blob %s: %w", d, r.NoteWrite(err))
		}
		if err != nil {
			r.keepPartial(ctx, id, up, since)
			return tee != nil, fmt.Errorf("fetch blob %s: %w (kept %d bytes to resume)", d, err, up.Size())
		}
	}
	_, err := up.Commit(ctx, d, size)
	return tee != nil, r.NoteWrite(err)
}

// partial is a fetch that broke, kept (its staging data, its hash) so the
// next fetch of the same staging id resumes with a Range. Partials live in
// this process: after a restart the orphan sweep removes their data.
type partial struct {
	up    *content.Upload
	since time.Time // when the fetch first broke: kept across resumes, so a partial that never completes expires
}

// keepPartial checkpoints up (releasing its writer) and keeps it for the
// next fetch of id, broken first at since (zero: now); one that cannot be
// checkpointed is discarded.
func (r *Region) keepPartial(ctx context.Context, id string, up *content.Upload, since time.Time) {
	if _, err := up.Checkpoint(ctx); err != nil {
		_ = up.Cancel(ctx)
		return
	}
	if since.IsZero() {
		since = r.now()
	}
	r.mu.Lock()
	r.partials[id] = &partial{up: up, since: since}
	r.mu.Unlock()
}

// takePartial returns the broken fetch kept for id, if any, and when it
// first broke, and forgets it.
func (r *Region) takePartial(id string) (*content.Upload, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.partials[id]
	if !ok {
		return nil, time.Time{}
	}
	delete(r.partials, id)
	return p.up, p.since
}

// partialHeld reports whether a broken fetch of staging id is kept.
func (r *Region) partialHeld(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.partials[id]
	return ok
}

// PartialBytes returns how many bytes broken fetches keep to resume.
func (r *Region) PartialBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, p := range r.partials {
		n += p.up.Size()
	}
	return n
}

// expirePartials discards broken fetches first broken before cutoff
// (their peer, say, was removed), and their data.
func (r *Region) expirePartials(ctx context.Context, cutoff time.Time) {
	r.mu.Lock()
	var old []*content.Upload
	for id, p := range r.partials {
		if p.since.Before(cutoff) {
			old = append(old, p.up)
			delete(r.partials, id)
		}
	}
	r.mu.Unlock()
	for _, up := range old {
		_ = up.Cancel(ctx)
	}
}

// bestEffort writes to w until a write fails, then drops the rest: a
// client that went away does not stop a fetch others will use.
type bestEffort struct {
	w      io.Writer
	failed bool
}

func (b *bestEffort) Write(p []byte) (int, error) {
	if !b.failed {
		if _, err := b.w.Write(p); err != nil {
			b.failed = true
		}
	}
	return len(p), nil
}
