package region

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// session is an upload session open in this process. Its bytes and its
// row in the metadata store outlive the process; after a restart the first
// request on it reopens it (content.Store.ResumeUpload).
//
// Requests on one session are serialized by mu; a second request arriving
// while one writes gets BLOB_UPLOAD_INVALID instead of waiting, since a
// client writing one session from two connections has lost track of it.
type session struct {
	mu   sync.Mutex
	repo string
	up   *content.Upload // nil until loaded, or after the session ended
	size atomic.Int64    // bytes received, readable without mu
}

// StartUpload opens a new upload session in repo and returns its id.
func (r *Region) StartUpload(ctx context.Context, repo string) (string, error) {
	id := r.newID()
	now := r.now()
	if err := r.db.CreateUpload(ctx, meta.Upload{ID: id, Repo: repo, Created: now, Updated: now}); err != nil {
		return "", err
	}
	up, err := r.store.Upload(ctx, id)
	if err != nil {
		return "", err
	}
	s := &session{repo: repo, up: up}
	r.mu.Lock()
	r.sessions[id] = s
	r.mu.Unlock()
	return id, nil
}

func uploadUnknown(id string) error {
	return ocierr.BlobUploadUnknown.WithDetail(
		fmt.Sprintf("upload %s is not open in this repository (finished, cancelled or expired); start a new one with POST /v2/<name>/blobs/uploads/", id),
		map[string]string{"upload_id": id})
}

// acquire returns session id of repo locked for one request; release
// unlocks it.
func (r *Region) acquire(ctx context.Context, repo, id string) (*session, error) {
	r.mu.Lock()
	s, ok := r.sessions[id]
	if ok {
		r.mu.Unlock()
		if s.repo != repo {
			return nil, uploadUnknown(id)
		}
		if !s.mu.TryLock() {
			return nil, ocierr.BlobUploadInvalid.Withf("upload %s is busy with another request; send its requests one at a time", id)
		}
		if s.up == nil {
			s.mu.Unlock()
			return nil, uploadUnknown(id)
		}
		return s, nil
	}
	// Not open in this process: reopen it from the stores, holding the
	// session's lock so a concurrent request waits for the reload.
	s = &session{repo: repo}
	s.mu.Lock()
	r.sessions[id] = s
	r.mu.Unlock()
	fail := func(err error) (*session, error) {
		r.mu.Lock()
		delete(r.sessions, id)
		r.mu.Unlock()
		s.mu.Unlock()
		return nil, err
	}
	u, err := r.db.GetUpload(ctx, id)
	if isNotFound(err) || (err == nil && u.Repo != repo) {
		return fail(uploadUnknown(id))
	}
	if err != nil {
		return fail(err)
	}
	up, err := r.store.ResumeUpload(ctx, id)
	if isNotFound(err) {
		return fail(uploadUnknown(id))
	}
	if err != nil {
		return fail(err)
	}
	s.up = up
	s.size.Store(up.Size())
	r.log.InfoContext(ctx, "upload session reopened", "upload_id", id, "repo", repo, "size", up.Size())
	return s, nil
}

// end forgets a finished or cancelled session; its lock stays held, so a
// request that raced for it sees it gone.
func (r *Region) end(id string, s *session) {
	s.up = nil
	r.mu.Lock()
	delete(r.sessions, id)
	r.mu.Unlock()
	s.mu.Unlock()
}

// Chunk is the part of a PATCH or closing PUT that carries bytes.
type Chunk struct {
	// Start is the offset the client says the bytes start at
	// (Content-Range), or -1 for a streamed chunk that simply appends.
	Start int64
	// Length is the number of bytes declared (from Content-Range, else
	// Content-Length), or -1 when unknown (chunked transfer encoding).
	Length int64
	Body   io.Reader
}

// UploadStatus returns the number of bytes session id of repo holds.
func (r *Region) UploadStatus(ctx context.Context, repo, id string) (int64, error) {
	r.mu.Lock()
	s, ok := r.sessions[id]
	r.mu.Unlock()
	if ok && s.repo == repo {
		return s.size.Load(), nil
	}
	s, err := r.acquire(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	return s.up.Size(), nil
}

// AppendUpload writes a chunk to session id and returns the session's size.
// A chunk that does not start where the session ends is refused with
// RANGE_INVALID (416) and changes nothing.
func (r *Region) AppendUpload(ctx context.Context, repo, id string, c Chunk) (int64, error) {
	s, err := r.acquire(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	if err := r.appendChunk(ctx, s, id, c); err != nil {
		return s.up.Size(), err
	}
	if err := r.db.TouchUpload(ctx, id, r.now()); err != nil {
		return 0, err
	}
	return s.up.Size(), nil
}

func (r *Region) appendChunk(ctx context.Context, s *session, id string, c Chunk) error {
	size := s.up.Size()
	if c.Start >= 0 && c.Start != size {
		return ocierr.RangeInvalid.WithDetail(
			fmt.Sprintf("chunk starts at byte %d but upload %s holds %d bytes; send the chunk that starts at %d (GET the upload for its Range)", c.Start, id, size, size),
			map[string]any{"upload_id": id, "size": size})
	}
	body := c.Body
	if c.Length >= 0 {
		body = io.LimitReader(c.Body, c.Length)
	}
	n, err := s.up.Append(ctx, body)
	s.size.Store(s.up.Size())
	if err != nil {
		return fmt.Errorf("upload %s: %w", id, err)
	}
	if c.Length >= 0 && n != c.Length {
		return ocierr.SizeInvalid.Withf("chunk declared %d bytes but %d arrived; upload %s now holds %d bytes, resume from there", c.Length, n, id, s.up.Size())
	}
	return nil
}

// FinishUpload appends a last chunk (which may be empty), verifies the
// session against d and stores the blob in repo. On a digest mismatch the
// session ends and nothing is stored.
func (r *Region) FinishUpload(ctx context.Context, repo, id string, d digest.Digest, c Chunk) (int64, error) {
	if !d.Algorithm().Available() {
		return 0, unsupportedDigest(d)
	}
	s, err := r.acquire(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	if err := r.appendChunk(ctx, s, id, c); err != nil {
		s.mu.Unlock()
		return 0, err
	}
	defer r.Lease(d)()
	size, err := s.up.Commit(ctx, d, -1)
	if err != nil {
		// Commit discarded the bytes on a mismatch: the session is over.
		if errors.Is(err, content.ErrDigestMismatch) || errors.Is(err, content.ErrUnsupported) {
			_ = r.db.Update(ctx, func(tx *meta.Tx) error { return tx.DeleteUpload(ctx, id) })
			r.end(id, s)
		} else {
			s.mu.Unlock()
		}
		return 0, blobError(err, d)
	}
	err = r.linkBlob(ctx, repo, d, size, id)
	r.end(id, s)
	return size, err
}

// CancelUpload ends session id and discards its bytes.
func (r *Region) CancelUpload(ctx context.Context, repo, id string) error {
	s, err := r.acquire(ctx, repo, id)
	if err != nil {
		return err
	}
	if err := s.up.Cancel(ctx); err != nil {
		s.mu.Unlock()
		return err
	}
	err = r.db.Update(ctx, func(tx *meta.Tx) error { return tx.DeleteUpload(ctx, id) })
	r.end(id, s)
	return err
}

// ExpireUploads ends sessions idle for longer than the upload TTL, and
// staging data no session owns (a monolithic upload cut off by a crash).
func (r *Region) ExpireUploads(ctx context.Context) error {
	cutoff := r.now().Add(-r.cfg.UploadTTL)
	for range 100 { // at most 100 batches per sweep; the next sweep goes on
		ids, err := r.db.StaleUploads(ctx, cutoff, 100)
		if err != nil || len(ids) == 0 {
			return err
		}
		for _, id := range ids {
			r.mu.Lock()
			s, open := r.sessions[id]
			busy := open && !s.mu.TryLock()
			r.mu.Unlock()
			if busy {
				continue
			}
			if err := r.store.CancelUpload(ctx, id); err != nil {
				if open {
					s.mu.Unlock()
				}
				return err
			}
			if err := r.db.Update(ctx, func(tx *meta.Tx) error { return tx.DeleteUpload(ctx, id) }); err != nil {
				if open {
					s.mu.Unlock()
				}
				return err
			}
			if open {
				r.end(id, s)
			}
			r.log.InfoContext(ctx, "upload session expired", "upload_id", id)
		}
	}
	return nil
}

// removeOrphanUploads deletes staging data that has no session row: what
// a monolithic upload left when the process died. Call it before serving.
func (r *Region) removeOrphanUploads(ctx context.Context) error {
	var orphans []string
	err := r.store.Backend().Walk(ctx, "uploads/", func(key string, _ int64, _ time.Time) error {
		id, _, _ := strings.Cut(strings.TrimPrefix(key, "uploads/"), "/")
		if _, err := r.db.GetUpload(ctx, id); isNotFound(err) {
			orphans = append(orphans, id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range orphans {
		if err := r.store.CancelUpload(ctx, id); err != nil {
			return err
		}
	}
	if len(orphans) > 0 {
		r.log.InfoContext(ctx, "removed staging data of interrupted uploads", "count", len(orphans))
	}
	return nil
}
