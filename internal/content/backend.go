// Package content stores blobs by digest over a key-oriented Backend.
//
// Backends know nothing of digests. Store hashes bytes as they stream in and
// commits an upload under its digest only when the size and digest it
// computed match what the client declared (DESIGN invariant 1). Upload data
// streams to the backend while hashing; it is never read back on the normal
// path, and memory per upload is one fixed-size buffer whatever the blob's
// size.
//
// Layout of keys in a backend:
//
//	blobs/<algorithm>/<first two hex>/<hex>   committed blobs
//	uploads/<id>/data                          bytes of an open upload session
package content

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned by Backend methods for a key that does not exist.
var ErrNotFound = errors.New("not found")

// Backend is storage by key. Implementations are safe for concurrent use on
// distinct keys; writing one key from two writers at once is undefined.
type Backend interface {
	// Stat returns the size of the object at key, or ErrNotFound.
	Stat(ctx context.Context, key string) (int64, error)
	// Reader returns the object's bytes from offset on. The caller closes
	// it. A reader that is an *os.File lets net/http hand the copy to the
	// kernel (sendfile).
	Reader(ctx context.Context, key string, offset int64) (io.ReadCloser, error)
	// Writer opens a staging object at key, appending to what is there when
	// appendTo is set, else starting empty.
	Writer(ctx context.Context, key string, appendTo bool) (Writer, error)
	// Delete removes the object at key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Walk calls fn for every object whose key starts with prefix, with
	// its size and when it was last written (garbage collection spares
	// objects written within its grace period).
	Walk(ctx context.Context, prefix string, fn func(key string, size int64, modified time.Time) error) error
}

// Writer is a staging object being written.
type Writer interface {
	io.Writer
	// Size is the staging object's total size so far.
	Size() int64
	// Close releases the writer, keeping what was written for a later
	// appending Writer.
	Close() error
	// Commit makes what was written durable and visible at key, atomically,
	// then releases the writer. The staging object is gone afterwards.
	Commit(ctx context.Context, key string) error
	// Cancel discards the staging object and releases the writer.
	Cancel(ctx context.Context) error
}
