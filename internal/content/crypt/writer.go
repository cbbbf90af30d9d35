package crypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/minio/sio"

	"github.com/georeg/georeg/internal/content"
)

// A staging object holds the header and whole packages only: the
// encrypting writer keeps the last (up to 64 KiB) of the plaintext until
// more follows or the object is committed (DARE seals every package but
// the final one at 64 KiB, and marks the final one). A checkpoint keeps
// that tail in its state, encrypted under a key of its own; the writer
// that resumes writes it first, and continues the packages' numbering
// with the same nonce.

// state is what Checkpoint returns, as JSON.
type state struct {
	Inner []byte   `json:"inner"` // the backend's own state
	Key   KeyID    `json:"key"`
	Salt  [32]byte `json:"salt"`
	Nonce [12]byte `json:"nonce"`
	Seq   int64    `json:"seq"`   // whole packages in the staging object
	Plain int64    `json:"plain"` // plaintext bytes taken
	Tail  []byte   `json:"tail"`  // the plaintext after the packages, encrypted
}

// Writer opens a staging object at key, encrypted.
func (b *Backend) Writer(ctx context.Context, key string, opts content.WriterOptions) (content.Writer, error) {
	ekey := encKey(key)
	target := ""
	if opts.Target != "" {
		target = encKey(opts.Target)
	}
	switch {
	case opts.Resume != nil:
		return b.resume(ctx, ekey, target, opts.Resume)
	case opts.Existing:
		return b.existing(ctx, ekey)
	}
	h, dk, err := b.newHeader(ctx)
	if err != nil {
		return nil, err
	}
	inner, err := b.inner.Writer(ctx, ekey, content.WriterOptions{Target: target})
	if err != nil {
		return nil, err
	}
	out := newCoalescer(inner)
	_, _ = out.Write(h.bytes()) // buffered
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		out.release()
		_ = inner.Cancel(ctx)
		return nil, err
	}
	nonce[0] &^= 0x80 // DARE keeps the final flag there: a resume reads the nonce back from a package
	return b.encrypting(out, h, dk, nonce, 0, nil)
}

// resume continues a staging object from a checkpoint's state.
func (b *Backend) resume(ctx context.Context, ekey, target string, raw []byte) (content.Writer, error) {
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("encrypted staging state of %s: %w", ekey, err)
	}
	dk, err := b.keys.Key(ctx, st.Key)
	if err != nil {
		return nil, err
	}
	h := header{key: st.Key, salt: st.Salt}
	tk, err := objectKey(dk, h.salt, "staging tail v1")
	if err != nil {
		return nil, err
	}
	var tail bytes.Buffer
	if len(st.Tail) > 0 {
		if _, err := sio.Decrypt(&tail, bytes.NewReader(st.Tail), config(tk)); err != nil {
			return nil, fmt.Errorf("%s: the checkpoint's tail: %w: %v", ekey, ErrCorrupt, err)
		}
	}
	if st.Seq*payloadSize+int64(tail.Len()) != st.Plain {
		return nil, fmt.Errorf("%s: %w: a checkpoint of %d bytes with %d packages and a tail of %d", ekey, ErrCorrupt, st.Plain, st.Seq, tail.Len())
	}
	inner, err := b.inner.Writer(ctx, ekey, content.WriterOptions{Resume: st.Inner, Target: target})
	if err != nil {
		return nil, err
	}
	if got, want := inner.Size(), headerSize+st.Seq*packageSize; got != want {
		_, _ = inner.Checkpoint(ctx)
		return nil, fmt.Errorf("%s: staging holds %d bytes, the checkpoint %d: %w", ekey, got, want, content.ErrCheckpointLost)
	}
	return b.encrypting(newCoalescer(inner), h, dk, st.Nonce, st.Seq, tail.Bytes())
}

// existing continues a staging object from the whole packages it holds,
// with no checkpoint (a filesystem's, after the caller read them back).
func (b *Backend) existing(ctx context.Context, ekey string) (content.Writer, error) {
	inner, err := b.inner.Writer(ctx, ekey, content.WriterOptions{Existing: true})
	if err != nil {
		return nil, err
	}
	size := inner.Size()
	fail := func(err error) (content.Writer, error) {
		_, _ = inner.Checkpoint(ctx)
		return nil, err
	}
	if size == 0 {
		h, dk, err := b.newHeader(ctx)
		if err != nil {
			return fail(err)
		}
		var nonce [12]byte
		if _, err := rand.Read(nonce[:]); err != nil {
			return fail(err)
		}
		nonce[0] &^= 0x80
		out := newCoalescer(inner)
		_, _ = out.Write(h.bytes()) // buffered
		return b.encrypting(out, h, dk, nonce, 0, nil)
	}
	if size < headerSize || (size-headerSize)%packageSize != 0 {
		return fail(fmt.Errorf("%s: %d bytes end inside a package: %w", ekey, size, content.ErrCheckpointLost))
	}
	r, err := b.inner.Reader(ctx, ekey, 0)
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	h, dk, err := b.headerFrom(ctx, r)
	if err != nil {
		return fail(err)
	}
	var nonce [12]byte
	seq := (size - headerSize) / packageSize
	if seq > 0 {
		pkg := make([]byte, dareHeader)
		if _, err := io.ReadFull(r, pkg); err != nil {
			return fail(err)
		}
		copy(nonce[:], pkg[4:16])
		nonce[0] &^= 0x80
	} else if _, err := rand.Read(nonce[:]); err != nil {
		return fail(err)
	}
	return b.encrypting(newCoalescer(inner), h, dk, nonce, seq, nil)
}

// encrypting returns the writer sealing packages from seq on into out,
// after tail (the plaintext a checkpoint kept).
func (b *Backend) encrypting(out *coalescer, h header, dk []byte, nonce [12]byte, seq int64, tail []byte) (content.Writer, error) {
	k, err := objectKey(dk, h.salt, "object v1")
	if err != nil {
		out.release()
		return nil, err
	}
	cfg := config(k)
	cfg.Nonce, cfg.SequenceNumber = &nonce, uint32(seq)
	w := &writer{inner: out.w, out: out, h: h, dk: dk, nonce: nonce, tail: make([]byte, 0, payloadSize)}
	if w.enc, err = sio.EncryptWriter(writeOnly{out}, cfg); err != nil {
		out.release()
		return nil, err
	}
	w.plain = seq * payloadSize
	if len(tail) > 0 {
		if _, err := w.Write(tail); err != nil { // buffered: up to 64 KiB stays in the writer
			return nil, err
		}
	}
	return w, nil
}

// writeOnly hides the writer's other methods from sio (which would close
// an io.Closer).
type writeOnly struct{ w io.Writer }

func (o writeOnly) Write(p []byte) (int, error) { return o.w.Write(p) }

// writer is an encrypted staging object being written.
type writer struct {
	inner  content.Writer
	out    *coalescer // between enc and inner
	enc    io.WriteCloser
	h      header
	dk     []byte
	nonce  [12]byte
	plain  int64  // plaintext bytes taken
	tail   []byte // the plaintext enc holds, not sealed yet
	broken error  // a write below failed inside a package: the object cannot go on
}

// ErrBroken is wrapped by what a writer answers after a write below it
// failed part way through a package (a full disk): unlike a plaintext
// one, the upload cannot go on from where it stopped.
var ErrBroken = errors.New("an encrypted staging object lost part of a package")

func (w *writer) Write(p []byte) (int, error) {
	if w.broken != nil {
		return 0, w.broken
	}
	n, err := w.enc.Write(p)
	if err == nil {
		// What is sealed reaches the store at the end of every Write (in
		// aligned runs): a reader following the upload waits no longer
		// than for a package.
		err = w.out.flush(false)
	}
	if err != nil {
		w.broken = fmt.Errorf("%w: %w", ErrBroken, err)
		return 0, w.broken
	}
	w.plain += int64(n)
	// enc holds the last ((plain-1) mod 64 KiB) + 1 bytes.
	keep := int((w.plain-1)%payloadSize) + 1
	if n >= keep {
		w.tail = append(w.tail[:0], p[n-keep:n]...)
	} else {
		w.tail = append(w.tail, p[:n]...)
		w.tail = w.tail[len(w.tail)-keep:]
	}
	return n, nil
}

func (w *writer) Size() int64 { return w.plain }

// WriteInline implements content.BackgroundWriter: the coalescer writes
// the ciphertext while the next buffer fills, unless the upload runs
// this writer's writes in a goroutine of their own.
func (w *writer) WriteInline(on bool) { w.out.inline = on }

// Checkpoint keeps the whole packages below and the tail, encrypted, in
// the state.
func (w *writer) Checkpoint(ctx context.Context) ([]byte, error) {
	if w.broken != nil {
		_ = w.inner.Cancel(ctx)
		return nil, w.broken
	}
	if err := w.out.sync(); err != nil {
		w.broken = fmt.Errorf("%w: %w", ErrBroken, err)
		return nil, w.broken
	}
	inner, err := w.inner.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	st := state{Inner: inner, Key: w.h.key, Salt: w.h.salt, Nonce: w.nonce, Seq: (w.plain - int64(len(w.tail))) / payloadSize, Plain: w.plain}
	if len(w.tail) > 0 {
		tk, err := objectKey(w.dk, w.h.salt, "staging tail v1")
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if _, err := sio.Encrypt(&buf, bytes.NewReader(w.tail), config(tk)); err != nil {
			return nil, err
		}
		st.Tail = buf.Bytes()
	}
	return json.Marshal(st)
}

// Commit seals the final package and commits the object at key.
func (w *writer) Commit(ctx context.Context, key string) error {
	if w.broken != nil {
		_ = w.inner.Cancel(ctx)
		return w.broken
	}
	err := w.enc.Close()
	if err == nil {
		err = w.out.sync()
	}
	w.out.release()
	if err != nil {
		_ = w.inner.Cancel(ctx)
		return err
	}
	return w.inner.Commit(ctx, encKey(key))
}

func (w *writer) Cancel(ctx context.Context) error {
	w.out.release()
	return w.inner.Cancel(ctx)
}
