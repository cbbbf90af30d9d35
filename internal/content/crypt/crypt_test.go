package crypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/content/contenttest"
	"github.com/georeg/georeg/internal/content/crypt"
	contentfs "github.com/georeg/georeg/internal/content/fs"
	contents3 "github.com/georeg/georeg/internal/content/s3"
	"github.com/georeg/georeg/internal/storetest"
)

// testKeys is a key service in memory: data keys by id, the newest
// current; down makes every key unavailable.
type testKeys struct {
	keys    map[crypt.KeyID][]byte
	current crypt.KeyID
	down    atomic.Bool
}

func newKeys() *testKeys {
	k := &testKeys{keys: map[crypt.KeyID][]byte{}}
	k.rotate()
	return k
}

func (k *testKeys) rotate() {
	var id crypt.KeyID
	_, _ = rand.Read(id[:])
	dk := make([]byte, 32)
	_, _ = rand.Read(dk)
	k.keys[id], k.current = dk, id
}

func (k *testKeys) Current(ctx context.Context) (crypt.KeyID, []byte, error) {
	dk, err := k.Key(ctx, k.current)
	return k.current, dk, err
}

func (k *testKeys) Key(_ context.Context, id crypt.KeyID) ([]byte, error) {
	if k.down.Load() {
		return nil, fmt.Errorf("test key service: %w", crypt.ErrKeyUnavailable)
	}
	dk, ok := k.keys[id]
	if !ok {
		return nil, fmt.Errorf("data key %s: %w", id, crypt.ErrKeyUnavailable)
	}
	return dk, nil
}

func (k *testKeys) Check(ctx context.Context) error { _, _, err := k.Current(ctx); return err }

// onFS returns an encrypted backend over a fresh directory, and the
// directory.
func onFS(t *testing.T, keys crypt.Keys) (*crypt.Backend, string) {
	dir := t.TempDir()
	inner, err := contentfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return crypt.New(inner, keys), dir
}

// TestTheBackendSuiteOnAnEncryptedFilesystem: the suite every backend
// passes, encrypted, on a filesystem (another Store over the same
// directory, as after a restart, shares the key service).
func TestTheBackendSuiteOnAnEncryptedFilesystem(t *testing.T) {
	keys := newKeys()
	contenttest.Run(t, func(t *testing.T) content.Backend {
		b, _ := onFS(t, keys)
		return b
	}, func(t *testing.T, b content.Backend) content.Backend {
		again, err := contentfs.Open(b.(*crypt.Backend).Inner().(*contentfs.Backend).Root())
		if err != nil {
			t.Fatal(err)
		}
		return crypt.New(again, keys)
	})
}

// TestTheBackendSuiteOnAnEncryptedBucket: the same on S3 (the test
// server scripts/services starts).
func TestTheBackendSuiteOnAnEncryptedBucket(t *testing.T) {
	keys := newKeys()
	open := func(t *testing.T) content.Backend {
		bucket := storetest.S3Bucket(t)
		b, err := contents3.Open(t.Context(), contents3.Config{Endpoint: bucket.Endpoint, Bucket: bucket.Bucket,
			AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey, PartSize: 5 << 20, Prefix: "region/"})
		if err != nil {
			t.Fatal(err)
		}
		return crypt.New(b, keys)
	}
	contenttest.Run(t, open, func(t *testing.T, b content.Backend) content.Backend {
		again, err := contents3.Open(t.Context(), b.(*crypt.Backend).Inner().(*contents3.Backend).Config())
		if err != nil {
			t.Fatal(err)
		}
		return crypt.New(again, keys)
	})
}

// marked is n random bytes with a marker every 4 KiB: none of it may be
// found in what is stored.
func marked(n int) []byte {
	data := make([]byte, n)
	_, _ = rand.Read(data)
	for i := 0; i+16 <= n; i += 4096 {
		copy(data[i:], "PLAINTEXT-MARKER")
	}
	return data
}

// files returns every regular file under dir, by path.
func files(t *testing.T, dir string) map[string][]byte {
	out := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWhatIsStoredHoldsNoPlaintextAndReadsBackFromAnyOffset: a blob put
// whole and an upload checkpointed mid-way (its staging data and the
// checkpoint's state) hold no byte run of the plaintext's marker on
// disk; the blob reads back from random offsets (Range reads), each the
// plaintext's bytes from there; its size is the plaintext's.
func TestWhatIsStoredHoldsNoPlaintextAndReadsBackFromAnyOffset(t *testing.T) {
	b, dir := onFS(t, newKeys())
	s := content.New(b)
	ctx := t.Context()
	data := marked(3<<20 + 12345)
	d := digest.FromBytes(data)
	if _, err := s.Put(ctx, "whole", d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	u, err := s.Upload(ctx, "partial", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Append(ctx, bytes.NewReader(data[:200_000])); err != nil {
		t.Fatal(err)
	}
	cp, err := u.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cp, []byte("PLAINTEXT-MARKER")) {
		t.Fatal("a checkpoint's state holds plaintext")
	}
	for p, content := range files(t, dir) {
		if bytes.Contains(content, []byte("PLAINTEXT-MARKER")) {
			t.Fatalf("%s holds plaintext", p)
		}
	}
	if size, err := s.Stat(ctx, d); err != nil || size != int64(len(data)) {
		t.Fatalf("stat: %d %v, want %d", size, err, len(data))
	}
	offsets := []int64{0, 1, 65535, 65536, 65537, 131072, int64(len(data)) - 1, int64(len(data))}
	for range 40 {
		offsets = append(offsets, mrand.Int64N(int64(len(data))))
	}
	for _, off := range offsets {
		r, err := s.Open(ctx, d, off)
		if err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		n := min(int64(len(data))-off, 1+mrand.Int64N(200_000))
		got := make([]byte, n)
		_, err = io.ReadFull(r, got)
		r.Close()
		if err != nil || !bytes.Equal(got, data[off:off+n]) {
			t.Fatalf("offset %d, %d bytes: %v, or other bytes", off, n, err)
		}
	}
	// The upload goes on from its checkpoint in another store.
	u2, err := content.New(b).ResumeUpload(ctx, "partial", cp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u2.Append(ctx, bytes.NewReader(data[200_000:])); err != nil {
		t.Fatal(err)
	}
	if _, err := u2.Commit(ctx, d, int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

// TestAnObjectChangedOrCutShortDoesNotRead: a byte flipped in a package,
// a blob cut at a package boundary (its final package gone), or a header
// not written here: each read fails with ErrCorrupt, never other bytes.
func TestAnObjectChangedOrCutShortDoesNotRead(t *testing.T) {
	b, dir := onFS(t, newKeys())
	s := content.New(b)
	ctx := t.Context()
	data := marked(200_000)
	d := digest.FromBytes(data)
	if _, err := s.Put(ctx, "x", d, -1, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var path string
	for p := range files(t, dir) {
		path = p
	}
	orig, _ := os.ReadFile(path)
	for name, change := range map[string]func([]byte) []byte{
		"a flipped byte":        func(b []byte) []byte { b[70_000] ^= 1; return b },
		"the final package cut": func(b []byte) []byte { return b[:64+2*(64<<10+32)] },
		"another header":        func(b []byte) []byte { copy(b, "XXXX"); return b },
	} {
		if err := os.WriteFile(path, change(bytes.Clone(orig)), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := s.Open(ctx, d, 0)
		if err == nil {
			_, err = io.ReadAll(r)
			r.Close()
		}
		if !errors.Is(err, crypt.ErrCorrupt) {
			t.Fatalf("%s: read %v, want ErrCorrupt", name, err)
		}
	}
}

// TestWithoutItsKeyNothingReadsOrWrites: with the key service down, a
// read, a new upload and the backend's check fail with
// ErrKeyUnavailable; back up, the blob reads as before.
func TestWithoutItsKeyNothingReadsOrWrites(t *testing.T) {
	keys := newKeys()
	b, _ := onFS(t, keys)
	s := content.New(b)
	ctx := t.Context()
	data := []byte("kept while the key is away")
	d := digest.FromBytes(data)
	if _, err := s.Put(ctx, "k", d, -1, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	keys.down.Store(true)
	if _, err := s.Open(ctx, d, 0); !errors.Is(err, crypt.ErrKeyUnavailable) {
		t.Fatalf("read without the key: %v", err)
	}
	if _, err := s.Upload(ctx, "k2", ""); !errors.Is(err, crypt.ErrKeyUnavailable) {
		t.Fatalf("upload without the key: %v", err)
	}
	if err := b.Check(ctx); !errors.Is(err, crypt.ErrKeyUnavailable) {
		t.Fatalf("check without the key: %v", err)
	}
	keys.down.Store(false)
	r, err := s.Open(ctx, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %q", got)
	}
}

// TestOldKeysStillReadAfterARotation: a blob written under one data key
// reads after another became current; new blobs use the new one.
func TestOldKeysStillReadAfterARotation(t *testing.T) {
	keys := newKeys()
	b, _ := onFS(t, keys)
	s := content.New(b)
	ctx := t.Context()
	one, two := []byte("under the first key"), []byte("under the second key")
	if _, err := s.Put(ctx, "a", digest.FromBytes(one), -1, bytes.NewReader(one)); err != nil {
		t.Fatal(err)
	}
	first := keys.current
	keys.rotate()
	if _, err := s.Put(ctx, "b", digest.FromBytes(two), -1, bytes.NewReader(two)); err != nil {
		t.Fatal(err)
	}
	delete(keys.keys, first)
	if _, err := s.Open(ctx, digest.FromBytes(one), 0); !errors.Is(err, crypt.ErrKeyUnavailable) {
		t.Fatalf("a blob whose key is gone: %v", err)
	}
	r, err := s.Open(ctx, digest.FromBytes(two), 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, two) {
		t.Fatalf("read %q", got)
	}
}

// TestPlaintextFromBeforeEncryptionStillReads: a blob stored before
// encryption was turned on reads through the encrypted backend, lists
// once, and a delete removes it.
func TestPlaintextFromBeforeEncryptionStillReads(t *testing.T) {
	dir := t.TempDir()
	inner, err := contentfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	old := []byte("stored in the clear, before")
	d := digest.FromBytes(old)
	if _, err := content.New(inner).Put(ctx, "p", d, -1, bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	b := crypt.New(inner, newKeys())
	s := content.New(b)
	r, err := s.Open(ctx, d, 3)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, old[3:]) {
		t.Fatalf("read %q", got)
	}
	var keys []string
	_ = b.Walk(ctx, "blobs/", func(k string, size int64, _ time.Time) error {
		keys = append(keys, fmt.Sprint(k, " ", size))
		return nil
	})
	if len(keys) != 1 || keys[0] != content.BlobKey(d)+fmt.Sprint(" ", len(old)) {
		t.Fatalf("walk: %v", keys)
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, d); !errors.Is(err, content.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

// TestPlaintextIsEncryptedInPlace: blobs stored before encryption was on
// (on a filesystem and in a bucket) are listed as plaintext, encrypted
// in place one by one, and then nothing stored holds the marker while
// each reads back whole and from an offset. A conversion stopped after
// its commit (both forms stored) is listed as such and finished by
// removing the plaintext; a blob whose bytes do not hash to its digest
// is left as it is (ErrCorrupt).
func TestPlaintextIsEncryptedInPlace(t *testing.T) {
	ctx := t.Context()
	for name, open := range map[string]func(t *testing.T) (content.Backend, func() [][]byte){
		"filesystem": func(t *testing.T) (content.Backend, func() [][]byte) {
			dir := t.TempDir()
			inner, err := contentfs.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			return inner, func() (out [][]byte) {
				for _, b := range files(t, dir) {
					out = append(out, b)
				}
				return out
			}
		},
		"bucket": func(t *testing.T) (content.Backend, func() [][]byte) {
			bucket := storetest.S3Bucket(t)
			inner, err := contents3.Open(ctx, contents3.Config{Endpoint: bucket.Endpoint, Bucket: bucket.Bucket,
				AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey, PartSize: 5 << 20})
			if err != nil {
				t.Fatal(err)
			}
			return inner, func() (out [][]byte) {
				_ = inner.Walk(ctx, "", func(key string, _ int64, _ time.Time) error {
					r, err := inner.Reader(ctx, key, 0)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(r)
					r.Close()
					out = append(out, b)
					return nil
				})
				return out
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			inner, stored := open(t)
			plain := content.New(inner)
			var blobs [][]byte
			for _, n := range []int{10, 70_000, 300_001} {
				b := marked(n)
				blobs = append(blobs, b)
				if _, err := plain.Put(ctx, "p", digest.FromBytes(b), -1, bytes.NewReader(b)); err != nil {
					t.Fatal(err)
				}
			}
			// The third one's plaintext was changed on disk: not encrypted.
			bad := blobs[2]
			badKey := content.BlobKey(digest.FromBytes(bad))
			w, err := inner.Writer(ctx, "uploads/x/data", content.WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write(append([]byte("X"), bad[1:]...))
			if err := w.Commit(ctx, badKey); err != nil {
				t.Fatal(err)
			}
			b := crypt.New(inner, newKeys())
			list := func() map[string]bool {
				out := map[string]bool{}
				if err := b.Plaintext(ctx, "blobs/", func(key string, _ int64, both bool) error {
					out[key] = both
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				return out
			}
			if got := list(); len(got) != 3 {
				t.Fatalf("plaintext objects: %v", got)
			}
			first := content.BlobKey(digest.FromBytes(blobs[0]))
			// A conversion that stopped after its commit: both forms.
			r, _ := inner.Reader(ctx, first, 0)
			ew, err := b.Writer(ctx, "uploads/y/data", content.WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(ew, r)
			r.Close()
			if err := ew.Commit(ctx, first); err != nil {
				t.Fatal(err)
			}
			if got := list(); len(got) != 3 || !got[first] {
				t.Fatalf("plaintext objects with one stored both ways: %v", got)
			}
			for key := range list() {
				d := digest.Digest("sha256:" + key[len(key)-64:])
				err := b.EncryptObject(ctx, key, d)
				if key == badKey {
					if !errors.Is(err, crypt.ErrCorrupt) {
						t.Fatalf("a changed blob: %v", err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := list(); len(got) != 1 || got[badKey] {
				t.Fatalf("plaintext objects after: %v", got)
			}
			for _, data := range stored() {
				if bytes.Contains(data, []byte("PLAINTEXT-MARKER")) && !bytes.HasPrefix(data, []byte("X")) {
					t.Fatal("a converted blob is still stored in plaintext")
				}
			}
			s := content.New(b)
			for _, blob := range blobs[:2] {
				r, err := s.Open(ctx, digest.FromBytes(blob), 5)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(r)
				r.Close()
				if !bytes.Equal(got, blob[5:]) {
					t.Fatalf("a converted blob reads back as %d other bytes", len(got))
				}
			}
		})
	}
}

// fullBackend is a backend whose writers fail with ENOSPC once they hold
// limit bytes (a disk that fills).
type fullBackend struct {
	content.Backend
	limit int64
}

func (f fullBackend) Writer(ctx context.Context, key string, opts content.WriterOptions) (content.Writer, error) {
	w, err := f.Backend.Writer(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	return &fullWriter{Writer: w, limit: f.limit}, nil
}

type fullWriter struct {
	content.Writer
	limit int64
}

func (w *fullWriter) Write(p []byte) (int, error) {
	if w.Size()+int64(len(p)) > w.limit {
		return 0, syscall.ENOSPC
	}
	return w.Writer.Write(p)
}

// TestADiskThatFillsBreaksTheUploadAndCommitsNothing: the store below
// fails with ENOSPC partway (its writes happen in the background): the
// encrypting writer answers an error wrapping ErrBroken and ENOSPC by
// the end of the upload at the latest, its commit fails, and nothing is
// stored under the key.
func TestADiskThatFillsBreaksTheUploadAndCommitsNothing(t *testing.T) {
	ctx := t.Context()
	inner, err := contentfs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := crypt.New(fullBackend{Backend: inner, limit: 2<<20 + 100}, newKeys())
	w, err := b.Writer(ctx, "uploads/full/data", content.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := marked(5 << 20)
	var werr error
	for off := 0; off < len(data) && werr == nil; off += 1 << 20 {
		_, werr = w.Write(data[off : off+1<<20])
	}
	cerr := w.Commit(ctx, "blobs/full")
	if werr == nil {
		werr = cerr
	}
	if !errors.Is(werr, crypt.ErrBroken) || !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("a write past a full disk: %v", werr)
	}
	if cerr == nil {
		t.Fatal("an upload that lost bytes committed")
	}
	if _, err := b.Stat(ctx, "blobs/full"); !errors.Is(err, content.ErrNotFound) {
		t.Fatalf("after the failed upload: %v", err)
	}
}
