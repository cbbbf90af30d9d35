package region

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
)

// inflight is a fetch from peers that is running: done closes when it
// ended, with its result.
type inflight struct {
	done     chan struct{}
	streamed bool
	err      error
}

// startFetch registers a fetch of staging id, or returns the one that is
// running; led reports which.
func (r *Region) startFetch(id string) (f *inflight, led bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.fetching[id]; ok {
		return f, false
	}
	if r.fetching == nil {
		r.fetching = map[string]*inflight{}
	}
	f = &inflight{done: make(chan struct{})}
	r.fetching[id] = f
	return f, true
}

// endFetch records the result of fetch f of staging id and releases
// whoever waits for it.
func (r *Region) endFetch(id string, f *inflight, streamed bool, err error) {
	r.mu.Lock()
	delete(r.fetching, id)
	r.mu.Unlock()
	f.streamed, f.err = streamed, err
	close(f.done)
}

// tailPoll is how often a call following another's fetch looks for new
// bytes in its staging file.
const tailPoll = 20 * time.Millisecond

// tailFetch serves a call that wants blob d streamed to w while another
// call leads its fetch (a region asked to relay a blob its own follower
// is fetching, a pull that arrives second): it writes the bytes of the
// fetch's staging file to w as they land there, all but the last one
// (which the fetch has not verified yet), and once the fetch committed,
// the rest from the store. When the fetch fails, it returns the fetch's
// error (after bytes went out, the caller cuts its response). A backend
// whose staging bytes cannot be read back (S3) is followed through the
// fetch's spill file when it has one (a blob the artifact cache offers,
// spill.go); else the call waits for the fetch as before. The loop ends with the fetch, which the
// peer bounds end (invariant 10), or with ctx.
func (r *Region) tailFetch(ctx context.Context, id string, d digest.Digest, size int64, f *inflight, w io.Writer) (streamed bool, err error) {
	var sent int64
	var rc io.ReadCloser
	defer func() {
		if rc != nil {
			rc.Close()
		}
	}()
	follow, failed := true, false // failed: a write to w failed, nothing more goes to it
	unreadable := false           // the staging data cannot be read back: its spill is followed, once it has one (spill.go)
	buf := make([]byte, 256<<10)
	t := time.NewTicker(tailPoll)
	defer t.Stop()
	for ended := false; !ended; {
		select {
		case <-f.done:
			ended = true
		case <-ctx.Done():
			return sent > 0, ctx.Err()
		default:
		}
		if follow && !failed && rc == nil && unreadable {
			rc, _ = r.openSpill(id) // none yet, or none at all: looked for again until the fetch ends
		}
		if follow && !failed && rc == nil && !unreadable {
			var err error
			switch rc, err = r.store.OpenUpload(ctx, id); {
			case errors.Is(err, content.ErrNotReadable):
				rc, unreadable = nil, true
				rc, _ = r.openSpill(id)
			case err != nil:
				rc = nil // not created yet: looked for again
			}
		}
		for rc != nil && !failed && sent < size-1 {
			n, err := rc.Read(buf[:min(int64(len(buf)), size-1-sent)])
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					failed = true
				}
				sent += int64(n)
			}
			if err != nil || n == 0 {
				break // io.EOF: no more landed yet
			}
		}
		if ended {
			break
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return sent > 0, ctx.Err()
		case <-t.C:
		}
	}
	switch {
	case f.err != nil:
		return sent > 0, f.err
	case sent == 0:
		return false, nil // the caller serves it from the store as usual
	case failed:
		return true, nil
	}
	rest, err := r.OpenContent(ctx, d, sent)
	if err != nil {
		return true, err
	}
	defer rest.Close()
	_, err = io.Copy(w, io.LimitReader(rest, size-sent))
	return true, err
}
