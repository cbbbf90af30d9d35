package content

import (
	"context"
	_ "crypto/sha512" // registers sha512 with go-digest: uploads may close with a sha512 digest
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
)

// Errors Store returns besides ErrNotFound; callers map them to OCI codes.
var (
	ErrDigestMismatch = errors.New("digest does not match content")
	ErrSizeMismatch   = errors.New("size does not match content")
	ErrUnsupported    = errors.New("unsupported digest algorithm")
	// ErrWrite wraps a failure to write to the backend (no space left, an
	// I/O error), as opposed to one of the source being read.
	ErrWrite = errors.New("writing to the content store")
)

// BufferSize is the one buffer an upload copies through: the whole of an
// upload's memory, whatever the blob's size. 1 MiB rather than 256 KiB:
// larger O_DIRECT writes and fewer syscalls took a 1 GiB upload from 1.23
// to 0.95 CPU-s/GiB (bench/, docs/performance.md).
const BufferSize = 1 << 20

var buffers = sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}

// Store keeps blobs by digest in a Backend. It is safe for concurrent use.
type Store struct {
	backend Backend
}

// New returns a Store over backend.
func New(backend Backend) *Store { return &Store{backend: backend} }

// Backend returns the store's backend, for optional powers found by type
// assertion (redirects).
func (s *Store) Backend() Backend { return s.backend }

// BlobKey is where a blob lives in the backend.
func BlobKey(d digest.Digest) string {
	enc := d.Encoded()
	return "blobs/" + d.Algorithm().String() + "/" + enc[:2] + "/" + enc
}

func uploadKey(id string) string { return "uploads/" + id + "/data" }

// Stat returns a blob's size, or ErrNotFound.
func (s *Store) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	return s.backend.Stat(ctx, BlobKey(d))
}

// Open returns a blob's bytes from offset on; the caller closes it.
func (s *Store) Open(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	return s.backend.Reader(ctx, BlobKey(d), offset)
}

// Delete removes a blob's bytes. Only garbage collection calls it: a blob
// is shared by every repository that links it.
func (s *Store) Delete(ctx context.Context, d digest.Digest) error {
	return s.backend.Delete(ctx, BlobKey(d))
}

// Put stores r's bytes as the blob d of size (size < 0: any size), verified
// as they stream: a client's monolithic upload (AppendAhead: nobody reads
// its staging while it arrives).
func (s *Store) Put(ctx context.Context, id string, d digest.Digest, size int64, r io.Reader) (int64, error) {
	u, err := s.Upload(ctx, id, d)
	if err != nil {
		return 0, err
	}
	if _, err := u.AppendAhead(ctx, r); err != nil {
		_ = u.Cancel(ctx)
		return 0, err
	}
	return u.Commit(ctx, d, size)
}

// Upload starts a new upload session id, empty. expect, when the caller
// knows it, is the digest the bytes should have. For sha256, whose hash
// runs as the bytes arrive and is checked before the backend commits, the
// backend may stage where that blob goes (an S3 multipart upload completes
// there, saving a copy). Never for another algorithm: its hash is known
// only after the bytes are sealed somewhere, and that must not be over the
// blob other repositories use (a lying upload would destroy it).
func (s *Store) Upload(ctx context.Context, id string, expect digest.Digest) (*Upload, error) {
	u := &Upload{store: s, id: id, hash: digest.SHA256.Hash()}
	if expect != "" && expect.Validate() == nil && expect.Algorithm() == digest.SHA256 {
		u.target = BlobKey(expect)
	}
	w, err := s.backend.Writer(ctx, uploadKey(id), WriterOptions{Target: u.target})
	if err != nil {
		return nil, fmt.Errorf("start upload %s: %w", id, err)
	}
	u.w = w
	return u, nil
}

// checkpoint is what Upload.Checkpoint returns, as JSON.
type checkpoint struct {
	Size   int64  `json:"size"`
	SHA256 []byte `json:"sha256"` // the running hash's state
	State  []byte `json:"state"`  // the backend's
	Target string `json:"target,omitempty"`
}

// ResumeUpload continues session id from cp, what its last Checkpoint
// returned, on this node or another. With cp nil, or when the backend
// lost bytes cp counted (ErrCheckpointLost: a filesystem after a power
// cut), the session continues from the bytes it holds, read back once to
// rehash them (a backend that cannot read staging data answers
// ErrNotReadable). ErrNotFound when the session has no data.
func (s *Store) ResumeUpload(ctx context.Context, id string, cp []byte) (*Upload, error) {
	if cp != nil {
		var c checkpoint
		if err := json.Unmarshal(cp, &c); err != nil {
			return nil, fmt.Errorf("resume upload %s: checkpoint: %w", id, err)
		}
		h := digest.SHA256.Hash()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(c.SHA256); err != nil {
			return nil, fmt.Errorf("resume upload %s: hash state: %w", id, err)
		}
		w, err := s.backend.Writer(ctx, uploadKey(id), WriterOptions{Resume: c.State, Target: c.Target})
		switch {
		case err == nil && w.Size() == c.Size:
			return &Upload{store: s, id: id, hash: h, size: c.Size, target: c.Target, w: w}, nil
		case err == nil:
			_, _ = w.Checkpoint(ctx)
			return nil, fmt.Errorf("resume upload %s: staging holds %d bytes, the checkpoint %d", id, w.Size(), c.Size)
		case !errors.Is(err, ErrCheckpointLost):
			return nil, fmt.Errorf("resume upload %s: %w", id, err)
		}
	}
	r, err := s.backend.Reader(ctx, uploadKey(id), 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	u := &Upload{store: s, id: id, hash: digest.SHA256.Hash()}
	n, err := copyBuffered(ctx, u.hash, r)
	if err != nil {
		return nil, fmt.Errorf("resume upload %s: %w", id, err)
	}
	u.size = n
	if u.w, err = s.backend.Writer(ctx, uploadKey(id), WriterOptions{Existing: true}); err != nil {
		return nil, fmt.Errorf("resume upload %s: %w", id, err)
	}
	if got := u.w.Size(); got != n {
		_, _ = u.w.Checkpoint(ctx)
		return nil, fmt.Errorf("resume upload %s: its staging changed while it was read (%d bytes, then %d)", id, n, got)
	}
	return u, nil
}

// OpenUpload returns the bytes session id holds so far; the caller closes
// the reader. ErrNotReadable when the backend cannot read them back.
func (s *Store) OpenUpload(ctx context.Context, id string) (io.ReadCloser, error) {
	return s.backend.Reader(ctx, uploadKey(id), 0)
}

// CancelUpload discards the data of session id, open in memory or not.
func (s *Store) CancelUpload(ctx context.Context, id string) error {
	return s.backend.Delete(ctx, uploadKey(id))
}

// Upload is an open upload session. Its methods must not be called
// concurrently; the caller serializes requests on one session.
type Upload struct {
	store  *Store
	id     string
	target string    // where the backend writes, when the digest was declared
	hash   hash.Hash // sha256 of every byte so far
	size   int64
	w      Writer // open until Checkpoint, Commit or Cancel
	state  []byte // the backend's state from the last Checkpoint
}

// ID returns the session id.
func (u *Upload) ID() string { return u.id }

// Size is the number of bytes received so far.
func (u *Upload) Size() int64 { return u.size }

// Append streams r to the end of the session while hashing it, through
// one buffer: each 1 MiB read reaches the store before the next is read,
// so a reader of the staging bytes (a fetch that others stream while it
// lands: read-through, relays, cold pulls of the artifact cache) gets
// them as they come. When r fails midway (a client that disconnects),
// the bytes received before the failure stay in the session and Size
// counts them, so the client can resume from the Range the upload
// status reports.
func (u *Upload) Append(ctx context.Context, r io.Reader) (int64, error) {
	return u.append(ctx, r, false)
}

// AppendAhead is Append for a body nobody reads while it arrives (a
// client's upload): while the node has a core per upload streaming, the
// next buffer is read and hashed while the last is written
// (appendPipelined), so bytes reach the store up to one 3 MiB buffer
// after they were read; else as Append.
func (u *Upload) AppendAhead(ctx context.Context, r io.Reader) (int64, error) {
	return u.append(ctx, r, true)
}

func (u *Upload) append(ctx context.Context, r io.Reader, ahead bool) (int64, error) {
	if _, err := u.writer(ctx); err != nil {
		return 0, err
	}
	if u.w.Size() != u.size {
		return 0, fmt.Errorf("upload %s: staging holds %d bytes, session expects %d", u.id, u.w.Size(), u.size)
	}
	if ahead && takePipelineSlot() {
		n, err := appendPipelined(ctx, u.w, u.hash, r)
		<-pipelineSlots
		u.size += n
		return n, err
	}
	hw := &hashingWriter{w: u.w, h: u.hash}
	_, err := copyBuffered(ctx, hw, r)
	u.size += hw.n
	return hw.n, err
}

// hashingWriter writes to w and hashes exactly the bytes w took, also when
// a write fails part way (a disk that fills mid-buffer): the session then
// holds, counts and has hashed the same bytes, and can go on from them.
type hashingWriter struct {
	w Writer
	h hash.Hash
	n int64
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return n, fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return n, nil
}

// Checkpoint keeps what the session holds so that ResumeUpload, here or
// on another node, continues it, and returns the state to pass it: the
// caller stores it with the session. The session stays usable.
func (u *Upload) Checkpoint(ctx context.Context) ([]byte, error) {
	if u.w != nil {
		st, err := u.w.Checkpoint(ctx)
		u.w = nil
		if err != nil {
			return nil, fmt.Errorf("checkpoint upload %s: %w", u.id, err)
		}
		u.state = st
	}
	h, err := u.hash.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	return json.Marshal(checkpoint{Size: u.size, SHA256: h, State: u.state, Target: u.target})
}

// Commit checks the session against the declared digest and size (size <
// 0: any) and stores it under d. On a mismatch the session is discarded
// and ErrDigestMismatch or ErrSizeMismatch is returned.
func (u *Upload) Commit(ctx context.Context, d digest.Digest, size int64) (int64, error) {
	if !d.Algorithm().Available() {
		_ = u.Cancel(ctx)
		return 0, fmt.Errorf("%w: %q (use sha256 or sha512)", ErrUnsupported, d.Algorithm())
	}
	if size >= 0 && size != u.size {
		_ = u.Cancel(ctx)
		return 0, fmt.Errorf("%w: declared %d bytes, received %d", ErrSizeMismatch, size, u.size)
	}
	if _, err := u.writer(ctx); err != nil {
		return 0, err
	}
	if d.Algorithm() != digest.SHA256 {
		return u.commitOther(ctx, d)
	}
	if got := digest.NewDigest(digest.SHA256, u.hash); got != d {
		_ = u.Cancel(ctx)
		return 0, fmt.Errorf("%w: declared %s, received %s", ErrDigestMismatch, d, got)
	}
	w := u.w
	u.w = nil
	if err := w.Commit(ctx, BlobKey(d)); err != nil {
		return 0, fmt.Errorf("commit upload %s as %s: %w", u.id, d, err)
	}
	return u.size, nil
}

// commitOther commits a blob whose digest is not sha256 (sha512): its
// digest is known only now, so the bytes are sealed at a staging key,
// read back once and hashed, then moved into place.
func (u *Upload) commitOther(ctx context.Context, d digest.Digest) (int64, error) {
	sealed := "uploads/" + u.id + "/sealed"
	w := u.w
	u.w = nil
	if err := w.Commit(ctx, sealed); err != nil {
		return 0, fmt.Errorf("commit upload %s: %w", u.id, err)
	}
	discard := func() { _ = u.store.backend.Delete(ctx, sealed) }
	r, err := u.store.backend.Reader(ctx, sealed, 0)
	if err != nil {
		discard()
		return 0, err
	}
	h := d.Algorithm().Hash()
	_, err = copyBuffered(ctx, h, r)
	r.Close()
	if err != nil {
		discard()
		return 0, err
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		discard()
		return 0, fmt.Errorf("%w: declared %s, received %s", ErrDigestMismatch, d, got)
	}
	if err := u.store.backend.Move(ctx, sealed, BlobKey(d)); err != nil {
		discard()
		return 0, fmt.Errorf("commit upload %s as %s: %w", u.id, d, err)
	}
	return u.size, nil
}

// Cancel discards the session's bytes.
//
// What the backend holds outside the session's staging key (an S3
// multipart upload begun at a blob's key) is reached through the writer,
// reopened from the last checkpoint when none is open.
func (u *Upload) Cancel(ctx context.Context) error {
	if u.w == nil && u.state != nil {
		if w, err := u.store.backend.Writer(ctx, uploadKey(u.id), WriterOptions{Resume: u.state, Target: u.target}); err == nil {
			u.w = w
		}
	}
	if u.w != nil {
		w := u.w
		u.w = nil
		_ = w.Cancel(ctx)
	}
	return u.store.CancelUpload(ctx, u.id)
}

// writer returns the session's open writer, opening it from the last
// checkpoint when none is.
func (u *Upload) writer(ctx context.Context) (Writer, error) {
	if u.w == nil {
		w, err := u.store.backend.Writer(ctx, uploadKey(u.id), WriterOptions{Resume: u.state, Target: u.target})
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", u.id, err)
		}
		u.w = w
	}
	return u.w, nil
}

// copyBuffered copies through one pooled buffer, filling it before each
// write (large, aligned writes go to disk directly), and checks ctx between
// writes so a cancelled request stops a long copy. Only io.EOF ends a copy
// cleanly: any other error, io.ErrUnexpectedEOF from a body cut short
// included, is returned with the count of bytes written before it, so the
// caller keeps them and can resume.
func copyBuffered(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, rerr := fill(src, buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return total, err
			}
			total += int64(n)
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// fill reads into buf until it is full or src returns an error.
func fill(src io.Reader, buf []byte) (int, error) {
	n, empty := 0, 0
	for n < len(buf) {
		k, err := src.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
		if k == 0 {
			if empty++; empty > 100 {
				return n, io.ErrNoProgress
			}
		}
	}
	return n, nil
}
