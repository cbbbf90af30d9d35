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
// aligned runs, at the end of each Write of the encrypting writer, in
// the background; what is left (under one alignment unit) is written,
// and the background write waited for, when the object is checkpointed
// or committed, so a checkpoint still counts only bytes the store holds.
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

// coalescer is the writer below sio: it buffers, then writes to w, one
// buffer at a time in the background while the next one fills (the
// disk's write overlaps the hashing and sealing of what follows). A
// background write's error is answered by the next Write or sync.
type coalescer struct {
	w       content.Writer
	buf     *[]byte    // being filled; from coalescePool; nil after release
	n       int        // bytes buffered
	off     int64      // bytes w holds once the write in flight is done
	flight  *[]byte    // the buffer being written in the background, or nil
	pending chan error // its outcome
	spare   *[]byte    // a written buffer, to fill next
	inline  bool       // write before flush returns, not in the background
}

func newCoalescer(w content.Writer) *coalescer {
	return &coalescer{w: w, buf: coalescePool.Get().(*[]byte), off: w.Size(), pending: make(chan error, 1)}
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

// wait waits for the write in flight, if any.
func (c *coalescer) wait() error {
	if c.flight == nil {
		return nil
	}
	err := <-c.pending
	c.spare, c.flight = c.flight, nil
	return err
}

// flush starts writing the buffer on in the background: all of it, or
// the longest prefix after which w's size is aligned (the rest moves to
// the start of the next buffer). It waits for the write before it, if
// it starts one.
func (c *coalescer) flush(all bool) error {
	if c.buf == nil || c.n == 0 {
		return nil
	}
	n := c.n
	if !all {
		n -= int((c.off + int64(c.n)) % coalesceAlign)
		if n <= 0 {
			return nil
		}
	}
	if err := c.wait(); err != nil {
		return err
	}
	next := c.spare
	c.spare = nil
	if next == nil {
		next = coalescePool.Get().(*[]byte)
	}
	full := c.buf
	c.n = copy(*next, (*full)[n:c.n])
	c.buf, c.flight = next, full
	c.off += int64(n)
	if c.inline {
		_, err := c.w.Write((*full)[:n])
		c.pending <- err
		return nil
	}
	go func(b []byte) {
		_, err := c.w.Write(b)
		c.pending <- err
	}((*full)[:n])
	return nil
}

// sync writes all that is buffered and waits for it: before a
// checkpoint or a commit.
func (c *coalescer) sync() error {
	if err := c.flush(true); err != nil {
		return err
	}
	return c.wait()
}

// release waits for the write in flight and returns the buffers to the
// pool.
func (c *coalescer) release() {
	_ = c.wait()
	for _, b := range []**[]byte{&c.buf, &c.spare} {
		if *b != nil {
			coalescePool.Put(*b)
			*b = nil
		}
	}
	c.n = 0
}
