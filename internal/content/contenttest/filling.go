package contenttest

import (
	"context"
	"io"
	"sync"
	"syscall"

	"github.com/georeg/georeg/internal/content"
)

// Filling is a Backend whose writes fail with ENOSPC once a given number
// of bytes has been written through it, part way through a buffer as a
// disk that fills does; Free lifts the limit. Tests of how the registry
// handles a full disk wrap a real backend in it.
type Filling struct {
	content.Backend
	mu   sync.Mutex
	left int64 // bytes writes may still take; < 0: no limit
}

// Close closes the backend it wraps, as a region closes its store's
// backend (an S3 backend's kept connections would outlive the test).
func (f *Filling) Close() error { return CloseWrapped(f.Backend) }

// CloseWrapped closes b when it has anything to close: what a test's
// wrapping backend does in its Close.
func CloseWrapped(b content.Backend) error {
	if c, ok := b.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// NewFilling wraps b, with no limit yet.
func NewFilling(b content.Backend) *Filling { return &Filling{Backend: b, left: -1} }

// FillAfter lets n more bytes be written, then fails every write with
// ENOSPC until Free.
func (f *Filling) FillAfter(n int64) {
	f.mu.Lock()
	f.left = n
	f.mu.Unlock()
}

// Free lifts the limit: space is back.
func (f *Filling) Free() { f.FillAfter(-1) }

// take returns how many of n bytes may be written now.
func (f *Filling) take(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.left < 0 {
		return n
	}
	k := int(min(int64(n), f.left))
	f.left -= int64(k)
	return k
}

// Writer implements content.Backend.
func (f *Filling) Writer(ctx context.Context, key string, opts content.WriterOptions) (content.Writer, error) {
	w, err := f.Backend.Writer(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	return &fillingWriter{Writer: w, f: f}, nil
}

type fillingWriter struct {
	content.Writer
	f *Filling
}

func (w *fillingWriter) Write(p []byte) (int, error) {
	k := w.f.take(len(p))
	n, err := w.Writer.Write(p[:k])
	if err == nil && k < len(p) {
		err = syscall.ENOSPC
	}
	return n, err
}
