package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/georeg/georeg/internal/content"
)

// smallBuf is the buffer a writer starts with: a blob that fits (a config,
// a small layer, what most small pushes and replicated records hold) never
// takes a whole part's buffer. A node taking 100 small pushes at once held
// 100 buffers of PartSize (16 MiB) for a few hundred bytes each, and its
// RSS peaked at 241 MiB. A writer that outgrows it moves to a part buffer
// once, copying at most smallBuf.
const smallBuf = 1 << 20

func randomSuffix() string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// state is a staging object's checkpoint (see the package comment).
type state struct {
	UploadID string `json:"uploadId,omitempty"`
	Object   string `json:"object,omitempty"` // the bucket key the multipart upload completes at
	Parts    []part `json:"parts,omitempty"`
	Tail     string `json:"tail,omitempty"` // bucket key of the bytes after the parts
	TailSize int64  `json:"tailSize,omitempty"`
	// Prev is the tail of the checkpoint this one followed: still named by
	// the state the caller kept until it keeps this one. The checkpoint
	// after this one deletes it (by then this one was kept: it is the
	// one resumed from), so a session holds two tails at most.
	Prev string `json:"prev,omitempty"`
}

type part struct {
	N    int    `json:"n"`
	ETag string `json:"etag"`
	Size int64  `json:"size"`
}

// Writer implements content.Backend.
//
// The writer keeps ctx for the uploads its writes start (io.Writer has no
// context): a writer lives for one request.
func (b *Backend) Writer(ctx context.Context, key string, opts content.WriterOptions) (content.Writer, error) {
	obj, err := b.object(key)
	if err != nil {
		return nil, err
	}
	if opts.Existing {
		return nil, content.ErrNotReadable // a multipart upload cannot be read back
	}
	w := &writer{b: b, key: obj, ctx: ctx}
	if opts.Target != "" {
		if w.target, err = b.object(opts.Target); err != nil {
			return nil, err
		}
	}
	if opts.Resume != nil {
		if err := json.Unmarshal(opts.Resume, &w.st); err != nil {
			return nil, fmt.Errorf("staging state of %s: %w", key, err)
		}
		w.resumed = true
	}
	for _, p := range w.st.Parts {
		w.parts += p.Size
	}
	return w, nil
}

// writer is a staging object being written: its state, and the tail in
// memory once loaded (the tail of a resumed state is read back on the
// first write or commit, not before).
type writer struct {
	b       *Backend
	ctx     context.Context // the request's: cancels the part uploads writes start
	key     string          // the staging key, in the bucket
	target  string          // where a multipart upload begins, when known
	st      state
	parts   int64   // bytes in st.Parts
	buf     *[]byte // the tail while writing; nil until loaded
	dirty   bool    // written since the state it resumed from
	resumed bool    // its session may have tails from earlier checkpoints
}

func (w *writer) Size() int64 {
	if w.buf != nil {
		return w.parts + int64(len(*w.buf))
	}
	return w.parts + w.st.TailSize
}

// load brings the tail into memory.
func (w *writer) load(ctx context.Context) error {
	if w.buf != nil {
		return nil
	}
	w.buf = w.b.small.Get().(*[]byte)
	*w.buf = (*w.buf)[:0]
	if w.st.Tail == "" {
		return nil
	}
	if int64(cap(*w.buf)) < w.st.TailSize {
		w.grow()
	}
	if int64(cap(*w.buf)) < w.st.TailSize { // written with a larger partSize
		big := make([]byte, 0, w.st.TailSize)
		w.buf = &big
	}
	rc, _, _, err := w.b.core.GetObject(ctx, w.b.cfg.Bucket, w.st.Tail, minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("read the tail of %s: %w", w.key, err)
	}
	defer rc.Close()
	n, err := io.ReadFull(rc, (*w.buf)[:w.st.TailSize])
	*w.buf = (*w.buf)[:n]
	if err != nil {
		return fmt.Errorf("read the tail of %s (%d of %d bytes): %w", w.key, n, w.st.TailSize, content.ErrCheckpointLost)
	}
	return nil
}

func (w *writer) release() {
	if w.buf != nil {
		w.put(w.buf)
		w.buf = nil
	}
}

// put returns buf to the pool its size came from (a buffer of another
// size, made for a tail of a larger partSize, is left to the GC).
func (w *writer) put(buf *[]byte) {
	switch int64(cap(*buf)) {
	case w.b.cfg.PartSize:
		w.b.bufs.Put(buf)
	case min(smallBuf, w.b.cfg.PartSize):
		w.b.small.Put(buf)
	}
}

// grow moves the tail from a first buffer to a part buffer.
func (w *writer) grow() {
	if int64(cap(*w.buf)) >= w.b.cfg.PartSize {
		return
	}
	big := w.b.bufs.Get().(*[]byte)
	*big = append((*big)[:0], *w.buf...)
	w.put(w.buf)
	w.buf = big
}

func (w *writer) Write(p []byte) (int, error) {
	ctx := w.ctx
	if err := w.load(ctx); err != nil {
		return 0, err
	}
	w.dirty = true
	total := 0
	for len(p) > 0 {
		if int64(len(*w.buf)) >= w.b.cfg.PartSize {
			if err := w.flush(ctx); err != nil {
				return total, err
			}
		}
		if len(*w.buf)+len(p) > cap(*w.buf) {
			w.grow()
		}
		buf := *w.buf
		k := min(len(p), int(w.b.cfg.PartSize)-len(buf))
		*w.buf = append(buf, p[:k]...)
		p, total = p[k:], total+k
	}
	if int64(len(*w.buf)) >= w.b.cfg.PartSize {
		if err := w.flush(ctx); err != nil {
			// The bytes are in the buffer still: count them written, a
			// checkpoint keeps them as the tail.
			return total, err
		}
	}
	return total, nil
}

// flush uploads the buffer as the next part, beginning the multipart
// upload at the first.
func (w *writer) flush(ctx context.Context) error {
	if w.st.UploadID == "" {
		obj := w.key
		if w.target != "" {
			obj = w.target
		}
		id, err := w.b.core.NewMultipartUpload(ctx, w.b.cfg.Bucket, obj, minio.PutObjectOptions{})
		if err != nil {
			return fmt.Errorf("begin multipart upload of %s: %w", obj, err)
		}
		w.st.UploadID, w.st.Object = id, obj
	}
	n := len(w.st.Parts) + 1
	data := *w.buf
	p, err := w.b.core.PutObjectPart(ctx, w.b.cfg.Bucket, w.st.Object, w.st.UploadID, n,
		bytes.NewReader(data), int64(len(data)), minio.PutObjectPartOptions{DisableContentSha256: true})
	if err != nil {
		return fmt.Errorf("upload part %d of %s: %w", n, w.st.Object, err)
	}
	w.st.Parts = append(w.st.Parts, part{N: n, ETag: p.ETag, Size: int64(len(data))})
	w.parts += int64(len(data))
	*w.buf = data[:0]
	return nil
}

// Checkpoint implements content.Writer: the tail goes to an object of
// its own; nothing is written when nothing changed.
func (w *writer) Checkpoint(ctx context.Context) ([]byte, error) {
	defer w.release()
	if w.dirty {
		if w.st.Prev != "" {
			// Named by no state the caller can still resume from.
			if err := w.b.client.RemoveObject(ctx, w.b.cfg.Bucket, w.st.Prev, minio.RemoveObjectOptions{}); err != nil && !errors.Is(notFound(err), content.ErrNotFound) {
				return nil, err
			}
		}
		w.st.Prev = w.st.Tail
		w.st.Tail, w.st.TailSize = "", 0
		if w.buf != nil && len(*w.buf) > 0 {
			tail := w.key + ".tail." + randomSuffix()
			data := *w.buf
			if _, err := w.b.core.PutObject(ctx, w.b.cfg.Bucket, tail, bytes.NewReader(data), int64(len(data)), "", "",
				minio.PutObjectOptions{DisableContentSha256: true}); err != nil {
				return nil, fmt.Errorf("keep the tail of %s: %w", w.key, err)
			}
			w.st.Tail, w.st.TailSize = tail, int64(len(data))
			w.resumed = true // tails now exist to clean up
		}
		w.dirty = false
	}
	return json.Marshal(w.st)
}

// Commit implements content.Writer.
func (w *writer) Commit(ctx context.Context, key string) error {
	defer w.release()
	dst, err := w.b.object(key)
	if err != nil {
		return err
	}
	if err := w.load(ctx); err != nil {
		return err
	}
	if w.st.UploadID == "" {
		data := *w.buf
		if _, err := w.b.core.PutObject(ctx, w.b.cfg.Bucket, dst, bytes.NewReader(data), int64(len(data)), "", "",
			minio.PutObjectOptions{DisableContentSha256: true}); err != nil {
			return fmt.Errorf("put %s: %w", dst, err)
		}
		return w.cleanTails(ctx)
	}
	if len(*w.buf) > 0 {
		if err := w.flush(ctx); err != nil {
			return err
		}
	}
	if w.st.Object != dst && w.st.Object != w.key {
		// Completing would put these bytes at another final key than the
		// one they were verified for: never overwrite a blob that way.
		_ = w.Cancel(ctx)
		return fmt.Errorf("commit %s: the upload was staged at %s, another blob's key; refusing to complete it there", dst, w.st.Object)
	}
	parts := make([]minio.CompletePart, len(w.st.Parts))
	for i, p := range w.st.Parts {
		parts[i] = minio.CompletePart{PartNumber: p.N, ETag: p.ETag}
	}
	if _, err := w.b.core.CompleteMultipartUpload(ctx, w.b.cfg.Bucket, w.st.Object, w.st.UploadID, parts, minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("complete the multipart upload of %s: %w", w.st.Object, err)
	}
	if w.st.Object != dst {
		if err := w.b.move(ctx, w.st.Object, dst); err != nil {
			return fmt.Errorf("move %s to %s: %w", w.st.Object, dst, err)
		}
	}
	return w.cleanTails(ctx)
}

// Cancel implements content.Writer.
func (w *writer) Cancel(ctx context.Context) error {
	w.release()
	if w.st.UploadID != "" {
		if err := w.b.core.AbortMultipartUpload(ctx, w.b.cfg.Bucket, w.st.Object, w.st.UploadID); err != nil && !errors.Is(notFound(err), content.ErrNotFound) {
			return err
		}
	}
	return w.cleanTails(ctx)
}

// cleanTails removes the tails this staging object's checkpoints left.
func (w *writer) cleanTails(ctx context.Context) error {
	if !w.resumed {
		return nil // never checkpointed a tail
	}
	return w.b.removePrefix(ctx, w.key+".tail.")
}
