// Package content stores blobs by digest over a key-oriented Backend.
//
// Backends know nothing of digests. Store hashes bytes as they stream in and
// commits an upload under its digest only when the size and digest it
// computed match what the client declared (DESIGN invariant 1). Upload data
// streams to the backend while hashing; it is never read back on the normal
// path, and memory per upload is bounded whatever the blob's size (one
// buffer here, plus what a backend buffers: one part for S3).
//
// An upload session outlives the request, the process and (with a shared
// backend) the node: Upload.Checkpoint returns a small state (the running
// hash, the size, the backend's staging state) that the caller keeps (the
// metadata store does) and ResumeUpload continues from, on any node.
//
// Layout of keys in a backend:
//
//	blobs/<algorithm>/<first two hex>/<hex>   committed blobs
//	uploads/<id>/data                          bytes of an open upload session
package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Errors of a Backend.
var (
	// ErrNotFound is returned for a key that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCheckpointLost is returned by Writer when the staging object no
	// longer holds what the checkpoint it resumes says (a filesystem that
	// lost unsynced bytes in a power cut).
	ErrCheckpointLost = errors.New("the staging object lost bytes its checkpoint counted")
	// ErrNotReadable is returned by Reader for a staging object the
	// backend cannot read before it is committed (an S3 multipart upload).
	ErrNotReadable = errors.New("staging data cannot be read before it is committed")
)

// Backend is storage by key. Implementations are safe for concurrent use on
// distinct keys; writing one key from two writers at once is undefined.
type Backend interface {
	// Stat returns the size of the object at key, or ErrNotFound.
	Stat(ctx context.Context, key string) (int64, error)
	// Reader returns the object's bytes from offset on. The caller closes
	// it. A reader that is an *os.File lets net/http hand the copy to the
	// kernel (sendfile).
	Reader(ctx context.Context, key string, offset int64) (io.ReadCloser, error)
	// Writer opens a staging object at key (see WriterOptions).
	Writer(ctx context.Context, key string, opts WriterOptions) (Writer, error)
	// Move makes the object at from visible at to, atomically, and removes
	// it at from.
	Move(ctx context.Context, from, to string) error
	// Delete removes the object at key, and for a staging key every part
	// of it any writer left; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Walk calls fn for every object whose key starts with prefix, with
	// its size and when it was last written (garbage collection spares
	// objects written within its grace period). Under "uploads/" it also
	// lists staging objects not committed yet.
	Walk(ctx context.Context, prefix string, fn func(key string, size int64, modified time.Time) error) error
}

// CheckKey refuses a key that could leave a backend's root: empty,
// absolute, or with a "..".
func CheckKey(key string) error {
	if key == "" || strings.Contains(key, "..") || strings.HasPrefix(key, "/") {
		return fmt.Errorf("bad content key %q", key)
	}
	return nil
}

// WriterOptions say where a Writer starts.
type WriterOptions struct {
	// Resume is a state a Checkpoint returned: the writer continues that
	// staging object. Nil starts an empty one, discarding what was there,
	// unless Existing.
	Resume []byte
	// Existing continues the staging object from all it holds, with no
	// checkpoint: only a backend whose staging data is readable (a
	// filesystem) supports it, after the caller rehashed what it holds.
	Existing bool
	// Target is the key Commit will most likely be called with, when the
	// caller knows it up front (a blob whose digest the client declared):
	// a backend that cannot rename cheaply (S3) writes there directly, and
	// a Commit to another key still works.
	Target string
}

// Writer is a staging object being written. Its methods must not be
// called concurrently. Each of Checkpoint, Commit and Cancel ends it.
type Writer interface {
	io.Writer
	// Size is the staging object's total size so far.
	Size() int64
	// Checkpoint keeps what was written (for a later Writer with
	// WriterOptions.Resume) and returns that state, a few hundred bytes
	// at most. On a filesystem it survives the process, on S3 the node.
	Checkpoint(ctx context.Context) ([]byte, error)
	// Commit makes what was written durable and visible at key,
	// atomically. The staging object is gone afterwards.
	Commit(ctx context.Context, key string) error
	// Cancel discards the staging object.
	Cancel(ctx context.Context) error
}

// BackgroundWriter is a Writer that writes to its store in the
// background (the encrypting writer gathers its ciphertext and writes it
// while the next fills). When Upload.Append already runs its writes in a
// goroutine of their own (appendPipelined), it has the writer write
// inline meanwhile: a second stage of hand-offs between goroutines cost
// more than it overlapped (docs/performance.md).
type BackgroundWriter interface {
	// WriteInline makes writes write before they return (on) or in the
	// background again (off); it is called between writes only.
	WriteInline(on bool)
}

// Checker is a Backend that can say whether it is usable now (readiness).
type Checker interface {
	Check(ctx context.Context) error
}

// Sweeper is a Backend that may hold staging data Walk does not list
// (S3 multipart uploads written straight to a blob's key): Sweep removes
// what was last written before cutoff.
type Sweeper interface {
	Sweep(ctx context.Context, cutoff time.Time) error
}

// Redirector is a Backend whose objects clients can fetch themselves: it
// returns a URL good for expiry that serves the object at key.
type Redirector interface {
	RedirectURL(ctx context.Context, key string, expiry time.Duration) (string, error)
}
