package region

import (
	"context"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
)

// A blob the artifact cache is fetching into a repository here (a cold
// pull, docs/cache.md) is offered while the fetch runs: a client's or a
// peer's GET of it that arrives before it is stored fetches it at once,
// or joins the fetch running, and streams it as it lands, instead of
// waiting for the whole image. The bytes are verified and stored like
// any fetch (FetchBlob, one per digest), and linked in the repository
// as the fetch would link them.

// coldBlob is how to fetch an offered blob from its upstream.
type coldBlob struct {
	size int64
	open func(ctx context.Context, offset int64) (io.ReadCloser, error)
}

// coldBlobs are the blobs offered, by repository and digest.
type coldBlobs struct {
	mu sync.Mutex
	m  map[string]*coldBlob
}

func coldKey(repo string, d digest.Digest) string { return repo + "@" + d.String() }

// OfferBlob offers blob d of size bytes, which a fetch running here will
// store in repo, fetched with open (from an offset) by whoever asks for
// it first; withdraw ends the offer (when the fetch ends). A blob offered
// twice keeps the first offer until that one is withdrawn.
func (r *Region) OfferBlob(repo string, d digest.Digest, size int64, open func(ctx context.Context, offset int64) (io.ReadCloser, error)) (withdraw func()) {
	c := &coldBlob{size: size, open: open}
	k := coldKey(repo, d)
	r.cold.mu.Lock()
	defer r.cold.mu.Unlock()
	if r.cold.m == nil {
		r.cold.m = map[string]*coldBlob{}
	}
	if _, ok := r.cold.m[k]; ok {
		return func() {}
	}
	r.cold.m[k] = c
	return func() {
		r.cold.mu.Lock()
		defer r.cold.mu.Unlock()
		if r.cold.m[k] == c {
			delete(r.cold.m, k)
		}
	}
}

// OfferedSize reports the size of blob d when it is offered in repo.
func (r *Region) OfferedSize(repo string, d digest.Digest) (int64, bool) {
	r.cold.mu.Lock()
	defer r.cold.mu.Unlock()
	c, ok := r.cold.m[coldKey(repo, d)]
	if !ok {
		return 0, false
	}
	return c.size, true
}

// FetchOffered makes blob d of repo, when it is offered, present and
// linked here: fetched now, or by the fetch of it running, and written
// to the writer start returns (nil start: not streamed). start is called
// at once, with the size, so a client or a peer region has its answer's
// headers before the first byte lands (a peer bounds its wait for
// headers); the bytes follow as they arrive (the fetch running is
// followed through its staging file, in the store's buffer steps), or
// from the store when the blob was here already. Like a read-through
// (Replicator.StreamBlob), the last byte goes out only after the blob
// was verified; an error with streamed true means the client got bytes
// that must not be trusted, or none after its headers: the caller
// breaks the connection. offered false: d is not offered in repo,
// nothing was done. The fetch finishes when the caller goes away
// (others may wait on it).
func (r *Region) FetchOffered(ctx context.Context, repo string, d digest.Digest, start func(size int64) io.Writer) (offered, streamed bool, err error) {
	r.cold.mu.Lock()
	c, ok := r.cold.m[coldKey(repo, d)]
	r.cold.mu.Unlock()
	if !ok {
		return false, false, nil
	}
	ctx = context.WithoutCancel(ctx)
	defer r.Lease(d)()
	if start == nil {
		if _, err := r.FetchBlob(ctx, FetchStagingID(d), d, c.size, c.open, nil); err != nil {
			return true, false, err
		}
		return true, false, r.LinkFetched(ctx, repo, d)
	}
	cw := &countingWriter{w: start(c.size)}
	hw := &HoldLast{W: cw}
	_, err = r.FetchBlob(ctx, FetchStagingID(d), d, c.size, c.open, hw)
	if err == nil {
		err = r.LinkFetched(ctx, repo, d)
	}
	if err == nil && cw.n == 0 && !hw.held {
		// Nothing was written: it was here already, or a fetch ended
		// before this call could follow it.
		var rc io.ReadCloser
		if rc, err = r.OpenContent(ctx, d, 0); err == nil {
			_, err = io.Copy(hw, io.LimitReader(rc, c.size))
			rc.Close()
		}
	}
	if err == nil {
		err = hw.Release()
	}
	return true, true, err
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// LinkFetched links blob d, whose bytes a fetch stored, in repo as a push
// of it would (a new version, a feed record, the quota checked), unless
// it is linked there already.
func (r *Region) LinkFetched(ctx context.Context, repo string, d digest.Digest) error {
	if ok, err := r.HasBlob(ctx, repo, d); err != nil || ok {
		return err
	}
	size, err := r.store.Stat(ctx, d)
	if err != nil {
		return err
	}
	return r.linkBlob(ctx, repo, d, size, "", nil)
}
