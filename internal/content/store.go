package content

import (
	"context"
	_ "crypto/sha512" // registers sha512 with go-digest: uploads may close with a sha512 digest
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
// as they stream. It is how monolithic uploads, replication and
// read-through store a blob.
func (s *Store) Put(ctx context.Context, id string, d digest.Digest, size int64, r io.Reader) (int64, error) {
	u, err := s.Upload(ctx, id)
	if err != nil {
		return 0, err
	}
	if _, err := u.Append(ctx, r); err != nil {
		_ = u.Cancel(ctx)
		return 0, err
	}
	return u.Commit(ctx, d, size)
}

// Upload starts a new upload session id. The session's bytes live in the
// backend, so a session outlives the process; its hash lives in the
// returned Upload.
func (s *Store) Upload(ctx context.Context, id string) (*Upload, error) {
	w, err := s.backend.Writer(ctx, uploadKey(id), false)
	if err != nil {
		return nil, fmt.Errorf("start upload %s: %w", id, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("start upload %s: %w", id, err)
	}
	return &Upload{store: s, id: id, hash: digest.SHA256.Hash()}, nil
}

// ResumeUpload returns the open session id after a restart, rehashing the
// bytes it already holds. This is the only place an upload is read back,
// and only once per session per restart. ErrNotFound when the session has
// no data.
func (s *Store) ResumeUpload(ctx context.Context, id string) (*Upload, error) {
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
	return u, nil
}

// OpenUpload returns the bytes session id holds so far; the caller closes
// the reader.
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
	store *Store
	id    string
	hash  hash.Hash // sha256 of every byte so far
	size  int64
}

// ID returns the session id.
func (u *Upload) ID() string { return u.id }

// Size is the number of bytes received so far.
func (u *Upload) Size() int64 { return u.size }

// Append streams r to the end of the session while hashing it. When r
// fails midway (a client that disconnects), the bytes received before the
// failure stay in the session and Size counts them, so the client can
// resume from the Range the upload status reports. A session whose staging
// data disagrees with Size (a failed disk write) refuses further appends.
func (u *Upload) Append(ctx context.Context, r io.Reader) (int64, error) {
	w, err := u.store.backend.Writer(ctx, uploadKey(u.id), true)
	if err != nil {
		return 0, fmt.Errorf("upload %s: %w", u.id, err)
	}
	if w.Size() != u.size {
		w.Close()
		return 0, fmt.Errorf("upload %s: staging holds %d bytes, session expects %d", u.id, w.Size(), u.size)
	}
	n, err := copyBuffered(ctx, io.MultiWriter(w, u.hash), r)
	u.size += n
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// Commit checks the session against the declared digest and size (size <
// 0: any) and stores it under d. On a mismatch the session is discarded
// and ErrDigestMismatch or ErrSizeMismatch is returned.
func (u *Upload) Commit(ctx context.Context, d digest.Digest, size int64) (int64, error) {
	got, err := u.digest(ctx, d.Algorithm())
	if err != nil {
		_ = u.Cancel(ctx)
		return 0, err
	}
	if size >= 0 && size != u.size {
		_ = u.Cancel(ctx)
		return 0, fmt.Errorf("%w: declared %d bytes, received %d", ErrSizeMismatch, size, u.size)
	}
	if got != d {
		_ = u.Cancel(ctx)
		return 0, fmt.Errorf("%w: declared %s, received %s", ErrDigestMismatch, d, got)
	}
	w, err := u.store.backend.Writer(ctx, uploadKey(u.id), true)
	if err != nil {
		return 0, fmt.Errorf("commit upload %s: %w", u.id, err)
	}
	if err := w.Commit(ctx, BlobKey(d)); err != nil {
		return 0, fmt.Errorf("commit upload %s as %s: %w", u.id, d, err)
	}
	return u.size, nil
}

// digest returns the digest of the session's bytes in algorithm alg. The
// running hash is sha256; another algorithm (sha512) is known only at the
// closing PUT, so its digest is computed by reading the bytes back once.
func (u *Upload) digest(ctx context.Context, alg digest.Algorithm) (digest.Digest, error) {
	if alg == digest.SHA256 {
		return digest.NewDigest(alg, u.hash), nil
	}
	if !alg.Available() {
		return "", fmt.Errorf("%w: %q (use sha256 or sha512)", ErrUnsupported, alg)
	}
	r, err := u.store.backend.Reader(ctx, uploadKey(u.id), 0)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := alg.Hash()
	if _, err := copyBuffered(ctx, h, r); err != nil {
		return "", err
	}
	return digest.NewDigest(alg, h), nil
}

// Cancel discards the session's bytes.
func (u *Upload) Cancel(ctx context.Context) error {
	return u.store.CancelUpload(ctx, u.id)
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
