package crypt

import (
	"sync"
	"unsafe"

	"github.com/georeg/georeg/internal/content"
)

// The encrypting writer hands the store one package (64 KiB and 32
// bytes) at a time after a 64-byte header, so no write below would be
// aligned: a filesystem would take each through its page cache (a copy
// and a write-back, twice the CPU of an unencrypted upload, which goes
// around the page cache with O_DIRECT). The coalescer gathers the
// ciphertext into an aligned buffer (up to 1 MiB) and writes it on in
// aligned runs, at the end of each Write of the encrypting writer; what
// is left (under one alignment unit) is written when the object is
// checkpointed or committed, so a checkpoint still counts only bytes the
// store holds.
const (
	coalesceSize  = 1 << 20
	coalesceAlign = 4096
)

var coalescePool = sync.Pool{New: func() any {
	raw := make([]byte, coalesceSize+coalesceAlign)
	skip := int(-uintptr(unsafe.Pointer(&raw[0])) & (coalesceAlign - 1))
	b := raw[skip : skip+coalesceSize : skip+coalesceSize]
	return &b
}}

// coalescer is the writer below sio: it buffers, then writes to w.
type coalescer struct {
	w   content.Writer
	buf *[]byte // from coalescePool; nil after release
	n   int     // bytes buffered
	off int64   // bytes w holds
}

func newCoalescer(w content.Writer) *coalescer {
	return &coalescer{w: w, buf: coalescePool.Get().(*[]byte), off: w.Size()}
}

func (c *coalescer) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		b := *c.buf
		k := copy(b[c.n:], p)
		c.n += k
		p = p[k:]
		total += k
		if c.n == len(b) {
			if err := c.flush(false); err != nil {
				return total - k, err
			}
		}
	}
	return total, nil
}

// flush writes the buffer on: all of it, or the longest prefix after
// which w's size is aligned (the rest moves to the buffer's start).
func (c *coalescer) flush(all bool) error {
	if c.buf == nil || c.n == 0 {
		return nil
	}
	b := *c.buf
	n := c.n
	if !all {
		n -= int((c.off + int64(c.n)) % coalesceAlign)
		if n <= 0 {
			return nil
		}
	}
	k, err := c.w.Write(b[:n])
	c.off += int64(k)
	if err != nil {
		return err
	}
	c.n = copy(b, b[n:c.n])
	return nil
}

// release returns the buffer to the pool.
func (c *coalescer) release() {
	if c.buf != nil {
		coalescePool.Put(c.buf)
		c.buf, c.n = nil, 0
	}
}
