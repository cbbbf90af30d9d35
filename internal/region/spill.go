package region

import (
	"context"
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

// spillDir is where this node's spill files are.
func (r *Region) spillDir() string { return filepath.Join(r.cfg.DataDir, "spill", r.cfg.Node) }

// spill is the spill file of one fetch.
type spill struct {
	f      *os.File
	failed bool
}

func (s *spill) Write(p []byte) (int, error) {
	if !s.failed {
		if _, err := s.f.Write(p); err != nil {
			s.failed = true
		}
	}
	return len(p), nil
}

// startSpill opens a spill for the fetch of staging id, whose upload up
// holds no byte yet, when the store cannot read staging data back and d
// is offered; nil otherwise.
func (r *Region) startSpill(ctx context.Context, id string, d digest.Digest, up *content.Upload) *spill {
	if up.Size() != 0 || !r.offeredAnywhere(d) {
		return nil
	}
	if _, encrypted := r.store.Backend().(*crypt.Backend); encrypted {
		return nil // a spill is plaintext: an encrypted region's followers wait for the blob
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
	r.mu.Lock()
	if r.spills == nil {
		r.spills = map[string]string{}
	}
	r.spills[id] = f.Name()
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
	path, ok := r.spills[id]
	r.mu.Unlock()
	if !ok {
		return nil, false
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, false // removed meanwhile: the fetch ended
	}
	return f, true
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
