package crypt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
)

// A store that held objects before encryption was turned on keeps them
// in plaintext (Reader still reads them) until each is encrypted in
// place: its encrypted form written beside it and committed (readers
// take it from then on), then the plaintext removed. A conversion cut
// short leaves either staging data (swept as any interrupted upload's),
// or both forms, the next pass then only removing the plaintext: at every
// moment one whole form of the object is readable.

// Plaintext calls fn for each object under prefix held in plaintext,
// staging data aside; both reports that its encrypted form is there too.
func (b *Backend) Plaintext(ctx context.Context, prefix string, fn func(key string, size int64, both bool) error) error {
	var pending string
	var pendingSize int64
	flush := func(both bool) error {
		if pending == "" {
			return nil
		}
		k, s := pending, pendingSize
		pending = ""
		return fn(k, s, both)
	}
	err := b.inner.Walk(ctx, prefix, func(key string, size int64, _ time.Time) error {
		if strings.HasPrefix(key, "uploads/") {
			return nil
		}
		if k, ok := plainKey(key); ok {
			return flush(k == pending) // the encrypted form sorts right after the plaintext
		}
		if err := flush(false); err != nil {
			return err
		}
		pending, pendingSize = key, size
		return nil
	})
	if err != nil {
		return err
	}
	return flush(false)
}

// EncryptObject encrypts the plaintext object at key in place. With want
// set (a blob's digest), the plaintext must hash to it, or nothing
// changes and the error wraps ErrCorrupt. An object gone meanwhile (a
// blob collected) is no error.
func (b *Backend) EncryptObject(ctx context.Context, key string, want digest.Digest) error {
	if _, err := b.inner.Stat(ctx, encKey(key)); err == nil {
		return b.inner.Delete(ctx, key) // a conversion that stopped before this
	}
	r, err := b.inner.Reader(ctx, key, 0)
	if errors.Is(err, content.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	var id [12]byte
	_, _ = rand.Read(id[:])
	w, err := b.Writer(ctx, "uploads/encrypt-"+hex.EncodeToString(id[:])+"/data", content.WriterOptions{})
	if err != nil {
		return err
	}
	var src io.Reader = r
	var v digest.Verifier
	if want != "" {
		v = want.Verifier()
		src = io.TeeReader(r, v)
	}
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{src}, buf); err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("encrypt %s: %w", key, err)
	}
	if v != nil && !v.Verified() {
		_ = w.Cancel(ctx)
		return fmt.Errorf("encrypt %s: %w: its plaintext does not hash to %s", key, ErrCorrupt, want)
	}
	if err := w.Commit(ctx, key); err != nil {
		return fmt.Errorf("encrypt %s: %w", key, err)
	}
	return b.inner.Delete(ctx, key)
}
