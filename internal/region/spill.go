package region

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/content/crypt"
)

// A store whose staging bytes cannot be read back before they are
// committed (S3: a multipart upload) cannot be followed as it lands. So
// that a cold pull streams there too, a fetch of a blob the artifact
// cache offers (OfferBlob) also writes its bytes to a spill file under
// DataDir/spill/<node>, which tailFetch follows instead of the staging data.
// The spill is removed when the fetch ends (a follower that opened it
// reads on, then takes the rest from the store). A spill write that fails
// (a full local disk) drops the spill: followers then wait for the fetch,
// as they would without one. Spill files are never a source of truth:
// what a follower sends is verified as the fetch commits, its last byte
// held until then; a start removes what a crash left.
//
// In a region that encrypts at rest, a spill file is encrypted too, with
// AES-256-CTR under a key made for that one spill and kept only in
// memory (a spill outlives neither its fetch nor its process): followers
// read it sequentially, byte for byte as it lands. It needs no
// authentication of its own, for the same reason it needs no fsync: what
// a follower sends is verified as the fetch commits.

// spillDir is where this node's spill files are.
func (r *Region) spillDir() string { return filepath.Join(r.cfg.DataDir, "spill", r.cfg.Node) }

// spill is the spill file of one fetch.
type spill struct {
	f      *os.File
	failed bool
	enc    cipher.Stream // nil: the region does not encrypt at rest
	buf    []byte        // what enc makes of a write
}

// spillFile is where a spill is and, when encrypted, its key.
type spillFile struct {
	path    string
	key, iv []byte
}

func (s *spill) Write(p []byte) (int, error) {
	if !s.failed {
		out := p
		if s.enc != nil {
			if cap(s.buf) < len(p) {
				s.buf = make([]byte, len(p))
			}
			out = s.buf[:len(p)]
			s.enc.XORKeyStream(out, p)
		}
		if _, err := s.f.Write(out); err != nil {
			s.failed = true
		}
	}
	return len(p), nil
}

// newSpillCipher makes a key and an IV for one spill, and its stream.
func newSpillCipher() (sf spillFile, stream cipher.Stream, err error) {
	sf.key, sf.iv = make([]byte, 32), make([]byte, aes.BlockSize)
	_, _ = rand.Read(sf.key)
	_, _ = rand.Read(sf.iv)
	block, err := aes.NewCipher(sf.key)
	if err != nil {
		return sf, nil, err
	}
	return sf, cipher.NewCTR(block, sf.iv), nil
}

// spillReader decrypts an encrypted spill as it is read, in order.
type spillReader struct {
	f      *os.File
	stream cipher.Stream
}

func (s *spillReader) Read(p []byte) (int, error) {
	n, err := s.f.Read(p)
	s.stream.XORKeyStream(p[:n], p[:n])
	return n, err
}

func (s *spillReader) Close() error { return s.f.Close() }

// startSpill opens a spill for the fetch of staging id, whose upload up
// holds no byte yet, when the store cannot read staging data back and d
// is offered; nil otherwise.
func (r *Region) startSpill(ctx context.Context, id string, d digest.Digest, up *content.Upload) *spill {
	if up.Size() != 0 || !r.offeredAnywhere(d) {
		return nil
	}
	rc, err := r.store.OpenUpload(ctx, id)
	if err == nil {
		rc.Close()
		return nil // readable: followed through the staging data
	}
	if !errors.Is(err, content.ErrNotReadable) {
		return nil
	}
	if err := os.MkdirAll(r.spillDir(), 0o700); err != nil {
		return nil
	}
	f, err := os.CreateTemp(r.spillDir(), "fetch-*")
	if err != nil {
		return nil
	}
	s := &spill{f: f}
	sf := spillFile{path: f.Name()}
	if _, encrypted := r.store.Backend().(*crypt.Backend); encrypted {
		if sf, s.enc, err = newSpillCipher(); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil
		}
		sf.path = f.Name()
	}
	r.mu.Lock()
	if r.spills == nil {
		r.spills = map[string]spillFile{}
	}
	r.spills[id] = sf
	r.mu.Unlock()
	return s
}

// endSpill forgets and removes the spill of staging id.
func (r *Region) endSpill(id string, s *spill) {
	if s == nil {
		return
	}
	r.mu.Lock()
	delete(r.spills, id)
	r.mu.Unlock()
	s.f.Close()
	os.Remove(s.f.Name())
}

// openSpill opens the spill of the fetch of staging id, if it has one.
func (r *Region) openSpill(id string) (io.ReadCloser, bool) {
	r.mu.Lock()
	sf, ok := r.spills[id]
	r.mu.Unlock()
	if !ok {
		return nil, false
	}
	f, err := os.Open(sf.path)
	if err != nil {
		return nil, false // removed meanwhile: the fetch ended
	}
	if sf.key == nil {
		return f, true
	}
	block, err := aes.NewCipher(sf.key)
	if err != nil {
		f.Close()
		return nil, false
	}
	return &spillReader{f: f, stream: cipher.NewCTR(block, sf.iv)}, true
}

// offeredAnywhere reports whether blob d is offered in some repository.
func (r *Region) offeredAnywhere(d digest.Digest) bool {
	r.cold.mu.Lock()
	defer r.cold.mu.Unlock()
	for k := range r.cold.m {
		if strings.HasSuffix(k, "@"+d.String()) { // coldKey
			return true
		}
	}
	return false
}

// clearSpills removes spill files a crash left.
func (r *Region) clearSpills() {
	entries, err := os.ReadDir(r.spillDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "fetch-") {
			os.Remove(filepath.Join(r.spillDir(), e.Name()))
		}
	}
}
