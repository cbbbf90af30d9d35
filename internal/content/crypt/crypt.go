// Package crypt encrypts a content.Backend at rest: every object (blobs,
// upload staging data, on a filesystem or in an S3 bucket) is written
// under authenticated streaming encryption (DARE 2.0, github.com/minio/sio:
// 64 KiB packages sealed with AES-256-GCM, the last one marked final) and
// read back, from any offset, without decrypting what comes before.
//
// Envelope: each object has its own key, derived (HKDF-SHA256) from one of
// the region's data keys and a random salt kept in the object's header;
// data keys are wrapped by a key-encryption key that never leaves the key
// service (Keys). Digests stay those of the plaintext: the Store above
// hashes what it is given, and replication moves plaintext between
// regions, each encrypting under its own keys.
//
// Layout: an encrypted object is stored at its key with ".enc" appended
// (an upload's staging data, uploads/<id>/data, at uploads/<id>.enc/data,
// which the backend below still knows for staging): a 64-byte header
// (magic, format, data key id, salt) and the packages.
// An object without the suffix is plaintext written before encryption
// was turned on: it is read as it is, until the background job that
// encrypts existing blobs replaced it.
package crypt

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/minio/sio"

	"github.com/georeg/georeg/internal/content"
)

// Suffix marks an encrypted object's key in the backend below.
const Suffix = ".enc"

// Header layout.
const (
	headerSize = 64
	magic      = "GRC1"
	format     = 1
)

// DARE 2.0's package sizes (github.com/minio/sio's constants, unexported).
const (
	payloadSize = 64 << 10
	packageSize = payloadSize + 32
)

// KeyID names a data key: the header of every object it encrypted keeps
// it.
type KeyID [16]byte

func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// ParseKeyID reads a KeyID's String.
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("data key id %q: want %d hex bytes", s, len(id))
	}
	copy(id[:], b)
	return id, nil
}

// Keys hands out the region's data keys (32 bytes each), unwrapped by the
// key service: Current for new objects, Key for an object's own. Either
// fails with an error wrapping ErrKeyUnavailable while the key service
// cannot unwrap it.
type Keys interface {
	Current(ctx context.Context) (KeyID, []byte, error)
	Key(ctx context.Context, id KeyID) ([]byte, error)
	// Check reports whether the current key is usable now (readiness).
	Check(ctx context.Context) error
}

// ErrKeyUnavailable is wrapped by every error of a key the key service
// cannot provide now (unreachable, the key disabled or destroyed).
var ErrKeyUnavailable = errors.New("encryption key unavailable")

// ErrCorrupt is wrapped by the error of an object whose header or
// packages do not authenticate: not written by this package under these
// keys, or changed since.
var ErrCorrupt = errors.New("encrypted object does not authenticate")

// Backend is a content.Backend that encrypts what it stores in another.
type Backend struct {
	inner content.Backend
	keys  Keys
}

// New returns inner encrypted with keys.
func New(inner content.Backend, keys Keys) *Backend { return &Backend{inner: inner, keys: keys} }

// Inner returns the backend the ciphertext is in.
func (b *Backend) Inner() content.Backend { return b.inner }

// encKey is where the object the Store names key is kept encrypted.
func encKey(key string) string {
	if staging(key) {
		return strings.TrimSuffix(key, "/data") + Suffix + "/data"
	}
	return key + Suffix
}

// plainKey is the Store's key of the encrypted object at ekey (ok false:
// ekey is plaintext from before encryption).
func plainKey(ekey string) (string, bool) {
	if strings.HasPrefix(ekey, "uploads/") && strings.HasSuffix(ekey, Suffix+"/data") {
		return strings.TrimSuffix(ekey, Suffix+"/data") + "/data", true
	}
	return strings.CutSuffix(ekey, Suffix)
}

// header is an encrypted object's first 64 bytes.
type header struct {
	key  KeyID
	salt [32]byte
}

func (h header) bytes() []byte {
	out := make([]byte, headerSize)
	copy(out, magic)
	out[4] = format
	copy(out[8:24], h.key[:])
	copy(out[24:56], h.salt[:])
	return out
}

func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) != headerSize || string(b[:4]) != magic {
		return h, fmt.Errorf("%w: no georeg header", ErrCorrupt)
	}
	if b[4] != format {
		return h, fmt.Errorf("%w: header format %d, this version reads %d", ErrCorrupt, b[4], format)
	}
	copy(h.key[:], b[8:24])
	copy(h.salt[:], b[24:56])
	return h, nil
}

// objectKey derives the key of one object (or of its staging tail, with
// another purpose) from data key dk and the object's salt.
func objectKey(dk []byte, salt [32]byte, purpose string) ([]byte, error) {
	return hkdf.Key(sha256.New, dk, salt[:], "georeg content "+purpose, 32)
}

// config is sio's configuration for key k.
func config(k []byte) sio.Config {
	return sio.Config{MinVersion: sio.Version20, MaxVersion: sio.Version20, CipherSuites: []byte{sio.AES_256_GCM}, Key: k}
}

// newHeader makes the header of a new object under the current key.
func (b *Backend) newHeader(ctx context.Context) (header, []byte, error) {
	var h header
	id, dk, err := b.keys.Current(ctx)
	if err != nil {
		return h, nil, err
	}
	h.key = id
	if _, err := rand.Read(h.salt[:]); err != nil {
		return h, nil, err
	}
	return h, dk, nil
}

// readHeader reads the header of the encrypted object at ekey and the
// data key it names.
func (b *Backend) readHeader(ctx context.Context, ekey string) (header, []byte, error) {
	r, err := b.inner.Reader(ctx, ekey, 0)
	if err != nil {
		return header{}, nil, err
	}
	defer r.Close()
	return b.headerFrom(ctx, r)
}

// headerFrom reads a header from r and the data key it names.
func (b *Backend) headerFrom(ctx context.Context, r io.Reader) (header, []byte, error) {
	buf := make([]byte, headerSize)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return header{}, nil, fmt.Errorf("%w: %d-byte header cut short", ErrCorrupt, headerSize)
		}
		return header{}, nil, err
	}
	h, err := parseHeader(buf)
	if err != nil {
		return h, nil, err
	}
	dk, err := b.keys.Key(ctx, h.key)
	return h, dk, err
}

// plainSize is the plaintext size of an encrypted object of size bytes in
// the backend (a staging object's packages so far).
func plainSize(size int64) int64 {
	if size <= headerSize {
		return 0
	}
	n, err := sio.DecryptedSize(uint64(size - headerSize))
	if err != nil {
		// A staging object cut inside a package: its whole packages.
		return (size - headerSize) / packageSize * payloadSize
	}
	return int64(n)
}

// Stat returns the plaintext size of the object at key.
func (b *Backend) Stat(ctx context.Context, key string) (int64, error) {
	size, err := b.inner.Stat(ctx, encKey(key))
	if errors.Is(err, content.ErrNotFound) {
		size, err = b.inner.Stat(ctx, key) // plaintext from before encryption
		if !errors.Is(err, content.ErrNotFound) {
			return size, err
		}
		// Encrypted by EncryptObject between the two lookups?
		size, err = b.inner.Stat(ctx, encKey(key))
	}
	if err != nil {
		return 0, err
	}
	return plainSize(size), nil
}

// Move moves the object at from to to (an encrypted one keeps its
// header: its key does not depend on where it is).
func (b *Backend) Move(ctx context.Context, from, to string) error {
	err := b.inner.Move(ctx, encKey(from), encKey(to))
	if errors.Is(err, content.ErrNotFound) {
		return b.inner.Move(ctx, from, to)
	}
	return err
}

// Delete removes the object at key, encrypted or not.
func (b *Backend) Delete(ctx context.Context, key string) error {
	return errors.Join(b.inner.Delete(ctx, encKey(key)), b.inner.Delete(ctx, key))
}

// Walk lists objects under prefix by the keys the Store uses, with their
// plaintext sizes.
func (b *Backend) Walk(ctx context.Context, prefix string, fn func(key string, size int64, modified time.Time) error) error {
	last := ""
	return b.inner.Walk(ctx, prefix, func(key string, size int64, modified time.Time) error {
		if k, ok := plainKey(key); ok {
			key, size = k, plainSize(size)
		}
		if key == last {
			return nil // both forms, while the object is being encrypted
		}
		last = key
		return fn(key, size, modified)
	})
}

// Check reports whether the backend below and the current key are usable.
func (b *Backend) Check(ctx context.Context) error {
	if c, ok := b.inner.(content.Checker); ok {
		if err := c.Check(ctx); err != nil {
			return err
		}
	}
	return b.keys.Check(ctx)
}

// Close closes the backend below, when it holds connections.
func (b *Backend) Close() error {
	if c, ok := b.inner.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Sweep passes the backend's sweep of staging data on.
func (b *Backend) Sweep(ctx context.Context, cutoff time.Time) error {
	if s, ok := b.inner.(content.Sweeper); ok {
		return s.Sweep(ctx, cutoff)
	}
	return nil
}

var (
	_ content.Backend = (*Backend)(nil)
	_ content.Checker = (*Backend)(nil)
	_ content.Sweeper = (*Backend)(nil)
)
