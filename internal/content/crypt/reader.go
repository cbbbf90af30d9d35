package crypt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/minio/sio"

	"github.com/georeg/georeg/internal/content"
)

// Reader returns the plaintext of the object at key from offset on: the
// packages from the one offset falls in, each authenticated as it is
// read. A committed object must end with its final package (a truncated
// one fails); an upload's staging data, still being written, is read up
// to its last whole package, and a later Read returns what landed since.
func (b *Backend) Reader(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	return b.reader(ctx, key, offset, true)
}

// reader is Reader; again says to look for the encrypted form once more
// when the plaintext is not found either (EncryptObject replaced it
// between the two lookups).
func (b *Backend) reader(ctx context.Context, key string, offset int64, again bool) (io.ReadCloser, error) {
	ekey := encKey(key)
	seq := offset / payloadSize
	var r io.ReadCloser
	var h header
	var dk []byte
	var err error
	if seq == 0 {
		if r, err = b.inner.Reader(ctx, ekey, 0); err == nil {
			if h, dk, err = b.headerFrom(ctx, r); err != nil {
				r.Close()
				return nil, fmt.Errorf("%s: %w", key, err)
			}
		}
	} else if h, dk, err = b.readHeader(ctx, ekey); err == nil {
		r, err = b.inner.Reader(ctx, ekey, headerSize+seq*packageSize)
	}
	if errors.Is(err, content.ErrNotFound) {
		r, err := b.inner.Reader(ctx, key, offset) // plaintext from before encryption
		if errors.Is(err, content.ErrNotFound) && again && !staging(key) {
			return b.reader(ctx, key, offset, false)
		}
		return r, err
	}
	if err != nil {
		return nil, err
	}
	k, err := objectKey(dk, h.salt, "object v1")
	if err != nil {
		r.Close()
		return nil, err
	}
	cfg := config(k)
	cfg.SequenceNumber = uint32(seq)
	skip := offset - seq*payloadSize
	if staging(key) {
		return &stagingReader{src: r, cfg: cfg, skip: skip, pkg: make([]byte, packageSize)}, nil
	}
	dr, err := sio.DecryptReader(r, cfg)
	if err != nil {
		r.Close()
		return nil, err
	}
	out := &plainReader{r: dr, c: r, key: key}
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, out, skip); err != nil {
			r.Close()
			if errors.Is(err, io.EOF) {
				return io.NopCloser(bytes.NewReader(nil)), nil // at or past the end
			}
			return nil, err
		}
	}
	return prefetch(out), nil
}

// staging reports whether key is an upload's data being written (read
// up to its last whole package), not a committed object.
func staging(key string) bool {
	return strings.HasPrefix(key, "uploads/") && strings.HasSuffix(key, "/data")
}

// plainReader is a committed object's decrypting reader; a package that
// does not authenticate is ErrCorrupt.
type plainReader struct {
	r   io.Reader
	c   io.Closer
	key string
}

func (p *plainReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	var se sio.Error
	if errors.As(err, &se) {
		err = fmt.Errorf("%s: %w: %v", p.key, ErrCorrupt, se)
	}
	return n, err
}

func (p *plainReader) Close() error { return p.c.Close() }

// stagingReader decrypts an upload's staging data package by package as
// it lands: a package not whole yet is kept and completed by later
// Reads, which meanwhile answer io.EOF (nothing more yet).
type stagingReader struct {
	src   io.ReadCloser
	cfg   sio.Config
	skip  int64
	pkg   []byte // the package being read
	have  int    // bytes of it read
	plain []byte // decrypted, not yet returned
	done  bool   // the final package was read
}

// dareHeader is a DARE 2.0 package header's size; a package's payload
// length (minus one) is in its bytes 2 and 3, its final flag in byte 4.
const dareHeader = 16

func (s *stagingReader) Read(p []byte) (int, error) {
	for len(s.plain) == 0 || s.skip > 0 {
		if len(s.plain) > 0 { // skip into the first package read
			k := min(int64(len(s.plain)), s.skip)
			s.plain, s.skip = s.plain[k:], s.skip-k
			continue
		}
		if s.done {
			return 0, io.EOF
		}
		want := dareHeader
		if s.have >= dareHeader {
			want = dareHeader + int(binary.LittleEndian.Uint16(s.pkg[2:4])) + 1 + 16
			if want > packageSize {
				return 0, fmt.Errorf("%w: a package of %d bytes", ErrCorrupt, want)
			}
		}
		if s.have < want {
			n, err := io.ReadFull(s.src, s.pkg[s.have:want])
			s.have += n
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, err
			}
			if s.have < want {
				return 0, io.EOF // not landed yet
			}
			continue // the header is whole: read on to the package's end
		}
		final := s.pkg[4]&0x80 != 0
		dr, err := sio.DecryptReader(bytes.NewReader(s.pkg[:want]), s.cfg)
		if err != nil {
			return 0, err
		}
		payload := make([]byte, want-dareHeader-16)
		if _, err := io.ReadFull(dr, payload); err != nil {
			return 0, fmt.Errorf("%w: package %d: %v", ErrCorrupt, s.cfg.SequenceNumber, err)
		}
		s.plain, s.have, s.done = payload, 0, final
		s.cfg.SequenceNumber++
	}
	n := copy(p, s.plain)
	s.plain = s.plain[n:]
	return n, nil
}

func (s *stagingReader) Close() error { return s.src.Close() }
