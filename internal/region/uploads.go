package region

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// session is an upload session as this process last saw it. The session
// itself lives in the stores: its bytes in the content store, its row (the
// checkpoint to continue them from, and its generation) in the metadata
// store, so any node of the region continues it. A request loads the row;
// the Upload kept here is reused while the row's generation is the one it
// continues, and resumed from the row's checkpoint otherwise (another node
// moved the session on, or this process restarted).
//
// Requests on one session are serialized by mu in one process, and by the
// generation across nodes: a checkpoint saves only over the generation it
// continued (meta.SaveUpload), so of two requests racing on one session
// one wins and the other gets BLOB_UPLOAD_INVALID. A second request
// arriving here while one writes gets BLOB_UPLOAD_INVALID at once instead
// of waiting, since a client writing one session from two connections has
// lost track of it.
type session struct {
	mu   sync.Mutex
	repo string
	up   *content.Upload // nil until loaded, or when its state is unknown
	gen  int64           // the generation up continues
	used time.Time       // last request on it here (mu held), for RunLocal
}

// StartUpload opens a new upload session in repo and returns its id.
func (r *Region) StartUpload(ctx context.Context, repo string) (string, error) {
	id := r.newID()
	now := r.now()
	up, err := r.store.Upload(ctx, id, "")
	if err != nil {
		return "", err
	}
	cp, err := up.Checkpoint(ctx)
	if err != nil {
		return "", err
	}
	if err := r.db.CreateUpload(ctx, meta.Upload{ID: id, Repo: repo, Checkpoint: cp, Created: now, Updated: now}); err != nil {
		_ = up.Cancel(ctx)
		return "", err
	}
	r.mu.Lock()
	r.sessions[id] = &session{repo: repo, up: up, used: now}
	r.mu.Unlock()
	return id, nil
}

func uploadUnknown(id string) error {
	return ocierr.BlobUploadUnknown.WithDetail(
		fmt.Sprintf("upload %s is not open in this repository (finished, cancelled or expired); start a new one with POST /v2/<name>/blobs/uploads/", id),
		map[string]string{"upload_id": id})
}

func uploadRaced(id string) error {
	return ocierr.BlobUploadInvalid.Withf("upload %s was moved on by another request meanwhile; GET the upload for its Range and continue from there, one request at a time", id)
}

// acquire returns session id of repo, locked for one request and loaded
// at its current generation; release unlocks it (s.mu.Unlock).
func (r *Region) acquire(ctx context.Context, repo, id string) (*session, error) {
	r.mu.Lock()
	s, ok := r.sessions[id]
	if !ok {
		s = &session{repo: repo}
		r.sessions[id] = s
	}
	r.mu.Unlock()
	if s.repo != repo {
		return nil, uploadUnknown(id)
	}
	if !s.mu.TryLock() {
		return nil, ocierr.BlobUploadInvalid.Withf("upload %s is busy with another request; send its requests one at a time", id)
	}
	s.used = r.now()
	fail := func(err error) (*session, error) {
		r.forget(id, s)
		s.mu.Unlock()
		return nil, err
	}
	row, err := r.db.GetUpload(ctx, id)
	if isNotFound(err) || (err == nil && row.Repo != repo) {
		return fail(uploadUnknown(id))
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if s.up != nil && s.gen == row.Gen {
		return s, nil
	}
	up, err := r.store.ResumeUpload(ctx, id, row.Checkpoint)
	if isNotFound(err) {
		return fail(uploadUnknown(id))
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.up, s.gen = up, row.Gen
	if up.Size() != row.Size {
		// The content store kept fewer bytes than the checkpoint counted (a
		// filesystem after a power cut): the row says so before anyone
		// reads its Range.
		r.log.WarnContext(ctx, "upload session lost bytes its checkpoint counted; it continues from what survived",
			"upload_id", id, "checkpoint_size", row.Size, "size", up.Size())
		if err := r.save(ctx, s, id); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	r.log.DebugContext(ctx, "upload session loaded", "upload_id", id, "repo", repo, "size", up.Size(), "gen", row.Gen)
	return s, nil
}

// save checkpoints s and records the checkpoint over the generation s
// continues. The session's Upload is dropped when its state is unknown
// after a failure, to be resumed from the row next time.
func (r *Region) save(ctx context.Context, s *session, id string) error {
	cp, err := s.up.Checkpoint(ctx)
	if err != nil {
		s.up = nil
		return err
	}
	if err := r.db.SaveUpload(ctx, s.repo, id, s.gen, s.up.Size(), cp, r.now()); err != nil {
		s.up = nil
		switch {
		case errors.Is(err, meta.ErrConflict):
			return uploadRaced(id)
		case isNotFound(err):
			return uploadUnknown(id)
		}
		return err
	}
	s.gen++
	return nil
}

// forget drops this process's view of session id.
func (r *Region) forget(id string, s *session) {
	r.mu.Lock()
	if r.sessions[id] == s {
		delete(r.sessions, id)
	}
	r.mu.Unlock()
}

// end forgets a finished or cancelled session; its lock stays held, so a
// request that raced for it sees it gone.
func (r *Region) end(id string, s *session) {
	s.up = nil
	r.forget(id, s)
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

// UploadStatus returns the number of bytes session id of repo holds, as
// its last checkpoint recorded (what every node continues from).
func (r *Region) UploadStatus(ctx context.Context, repo, id string) (int64, error) {
	row, err := r.db.GetUpload(ctx, id)
	if isNotFound(err) || (err == nil && row.Repo != repo) {
		return 0, uploadUnknown(id)
	}
	if err != nil {
		return 0, err
	}
	return row.Size, nil
}

// AppendUpload writes a chunk to session id and returns the session's size.
// A chunk that does not start where the session ends is refused with
// RANGE_INVALID (416) and changes nothing. The bytes a chunk cut short
// delivered are kept (checkpointed), so the client resumes from there.
func (r *Region) AppendUpload(ctx context.Context, repo, id string, c Chunk) (int64, error) {
	s, err := r.acquire(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	before := s.up.Size()
	aerr := r.appendChunk(ctx, s, id, c)
	if IsNoSpace(aerr) {
		return 0, r.discardFull(ctx, s, id, aerr)
	}
	defer s.mu.Unlock()
	if err := r.keep(ctx, s, id, before); err != nil {
		return 0, err
	}
	if s.up == nil {
		return before, aerr
	}
	return s.up.Size(), aerr
}

// keep ends a request that appended to s: the session is saved when its
// size moved from before, else only its writer is released.
func (r *Region) keep(ctx context.Context, s *session, id string, before int64) error {
	if s.up.Size() != before {
		return r.save(ctx, s, id)
	}
	if _, err := s.up.Checkpoint(ctx); err != nil { // nothing changed: releases the writer
		s.up = nil
	}
	return nil
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
	n, err := s.up.AppendAhead(ctx, body)
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
	before := s.up.Size()
	if err := r.appendChunk(ctx, s, id, c); err != nil {
		if IsNoSpace(err) {
			return 0, r.discardFull(ctx, s, id, err)
		}
		if kerr := r.keep(ctx, s, id, before); kerr != nil {
			err = kerr
		}
		s.mu.Unlock()
		return 0, err
	}
	lease, release := r.LeaseToLink(ctx, d)
	defer release()
	size, err := s.up.Commit(ctx, d, -1)
	if IsNoSpace(err) {
		return 0, r.discardFull(ctx, s, id, err)
	}
	if err != nil {
		// Commit discarded the bytes on a mismatch: the session is over.
		if errors.Is(err, content.ErrDigestMismatch) || errors.Is(err, content.ErrUnsupported) {
			_ = r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error { return tx.DeleteUpload(ctx, id) })
			r.end(id, s)
		} else {
			s.up = nil // its state is unknown: resumed from the row next time
			s.mu.Unlock()
		}
		return 0, blobError(err, d)
	}
	err = r.linkBlob(ctx, repo, d, size, id, lease)
	r.end(id, s)
	return size, err
}

// discardFull ends session s, locked, whose write found the storage full:
// its bytes are released (a disk that is full needs every byte back, and
// the client starts its push again anyway), and the region is marked
// full. It returns STORAGE_FULL.
func (r *Region) discardFull(ctx context.Context, s *session, id string, cause error) error {
	if s.up != nil {
		_ = s.up.Cancel(ctx)
	} else {
		_ = r.store.CancelUpload(ctx, id)
	}
	_ = r.db.UpdateRepo(ctx, s.repo, func(tx *meta.Tx) error { return tx.DeleteUpload(ctx, id) })
	r.end(id, s)
	r.log.WarnContext(ctx, "upload discarded: the storage is full", "upload_id", id, "error", cause)
	return r.NoteWrite(cause)
}

// CancelUpload ends session id and discards its bytes.
func (r *Region) CancelUpload(ctx context.Context, repo, id string) error {
	s, err := r.acquire(ctx, repo, id)
	if err != nil {
		return err
	}
	if err := s.up.Cancel(ctx); err != nil {
		s.up = nil
		s.mu.Unlock()
		return err
	}
	err = r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error { return tx.DeleteUpload(ctx, id) })
	r.end(id, s)
	return err
}

// ExpireUploads ends sessions idle for longer than the upload TTL, and
// staging data no session owns (a monolithic upload or a fetch cut off by
// a crash) once it is that old too.
func (r *Region) ExpireUploads(ctx context.Context) error {
	cutoff := r.now().Add(-r.cfg.UploadTTL)
	for range 100 { // at most 100 batches per sweep; the next sweep goes on
		ids, err := r.db.StaleUploads(ctx, cutoff, 100)
		if err != nil {
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
		if len(ids) < 100 {
			break
		}
	}
	r.expirePartials(ctx, cutoff)
	return r.removeOrphanUploads(ctx, cutoff)
}

// removeOrphanUploads deletes staging data that has no session row and was
// last written before cutoff: what a monolithic upload or a fetch left
// when its process died. At start, with a store no other node uses, every
// orphan goes at once (cutoff: now); with a shared store another node's
// monolithic upload may be writing one, so only old ones go.
func (r *Region) removeOrphanUploads(ctx context.Context, cutoff time.Time) error {
	orphans := map[string]bool{}
	checked := map[string]struct{}{} // one lookup per session, not per object of it
	err := r.store.Backend().Walk(ctx, "uploads/", func(key string, _ int64, modified time.Time) error {
		if !modified.Before(cutoff) {
			return nil
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(key, "uploads/"), "/")
		if _, seen := checked[id]; seen || r.partialHeld(id) {
			return nil
		}
		_, err := r.db.GetUpload(ctx, id)
		checked[id] = struct{}{}
		if isNotFound(err) {
			orphans[id] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	for id := range orphans {
		if err := r.store.CancelUpload(ctx, id); err != nil {
			return err
		}
	}
	if len(orphans) > 0 {
		r.log.InfoContext(ctx, "removed staging data of interrupted uploads", "count", len(orphans))
	}
	if sw, ok := r.store.Backend().(content.Sweeper); ok {
		if err := sw.Sweep(ctx, cutoff); err != nil {
			return fmt.Errorf("sweep stale staging: %w", err)
		}
	}
	return nil
}
