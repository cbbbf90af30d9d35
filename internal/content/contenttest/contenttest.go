// Package contenttest is the suite every content.Backend passes, run
// through content.Store so it checks the promises the registry relies on:
// verified commits, sessions resumed from a checkpoint by another Store
// (another node) over the same backend, offsets, moves, deletes and walks.
package contenttest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
)

// Run runs the suite against backends made by newBackend, one per test.
// reopen returns another Backend over the same storage as b (a second
// node's, or the same process after a restart).
func Run(t *testing.T, newBackend func(t *testing.T) content.Backend, reopen func(t *testing.T, b content.Backend) content.Backend) {
	t.Run("a blob put whole reads back from any offset", func(t *testing.T) {
		s := content.New(newBackend(t))
		data := bytes.Repeat([]byte("0123456789"), 3_000_000) // spans buffers and S3 parts
		d := digest.FromBytes(data)
		if _, err := s.Put(t.Context(), "u1", d, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if size, err := s.Stat(t.Context(), d); err != nil || size != int64(len(data)) {
			t.Fatalf("stat: %d %v", size, err)
		}
		for _, off := range []int64{0, 1, 4095, 1 << 20, int64(len(data)) - 1} {
			got := readAll(t, s, d, off)
			if !bytes.Equal(got, data[off:]) {
				t.Fatalf("offset %d: %d bytes differ", off, len(got))
			}
		}
	})
	t.Run("a session that runs out of space holds what it took and goes on once space returns", func(t *testing.T) {
		data := make([]byte, 3<<20+17)
		_, _ = rand.Read(data)
		d := digest.FromBytes(data)
		// Alone, a client's upload writes in the background while it
		// reads; on a node streaming an upload per core, through one
		// buffer.
		for _, c := range []struct{ resume, busy bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
			f := NewFilling(newBackend(t))
			s := content.New(f)
			u, err := s.Upload(t.Context(), fmt.Sprintf("full-%t-%t", c.resume, c.busy), "")
			if err != nil {
				t.Fatal(err)
			}
			f.FillAfter(1_500_123)
			var release func()
			if c.busy {
				release = busyNode(t, s)
			}
			n, err := u.AppendAhead(t.Context(), bytes.NewReader(data))
			if release != nil {
				release()
			}
			if !errors.Is(err, content.ErrWrite) || !errors.Is(err, syscall.ENOSPC) || n != 1_500_123 || u.Size() != n {
				t.Fatalf("append to a full disk (busy node: %t): %d bytes, size %d, %v; want 1500123 and ENOSPC", c.busy, n, u.Size(), err)
			}
			f.Free()
			resume := c.resume
			if resume { // on another node, from a checkpoint
				cp, err := u.Checkpoint(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if u, err = content.New(reopen(t, f.Backend)).ResumeUpload(t.Context(), u.ID(), cp); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := u.Append(t.Context(), bytes.NewReader(data[n:])); err != nil {
				t.Fatalf("append once space is back: %v", err)
			}
			if _, err := u.Commit(t.Context(), d, int64(len(data))); err != nil {
				t.Fatalf("commit: %v", err)
			}
			if got := readAll(t, s, d, 0); !bytes.Equal(got, data) {
				t.Fatal("the blob committed after the disk filled has other bytes")
			}
		}
	})
	t.Run("a small blob put whole is stored", func(t *testing.T) {
		s := content.New(newBackend(t))
		data := []byte("small")
		d := digest.FromBytes(data)
		if _, err := s.Put(t.Context(), "u1s", d, 5, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, s, d, 0); !bytes.Equal(got, data) {
			t.Fatalf("read back %q", got)
		}
	})
	t.Run("a digest mismatch stores nothing", func(t *testing.T) {
		b := newBackend(t)
		s := content.New(b)
		wrong := digest.FromString("something else")
		for _, data := range [][]byte{[]byte("actual bytes"), bytes.Repeat([]byte("big "), 3<<20)} {
			_, err := s.Put(t.Context(), "u2", wrong, -1, bytes.NewReader(data))
			if !errors.Is(err, content.ErrDigestMismatch) {
				t.Fatalf("got %v, want ErrDigestMismatch", err)
			}
			if _, err := s.Stat(t.Context(), wrong); !errors.Is(err, content.ErrNotFound) {
				t.Fatalf("mismatched blob visible: %v", err)
			}
		}
		if keys := walk(t, b, ""); len(keys) != 0 {
			t.Fatalf("left behind: %v", keys)
		}
	})
	t.Run("a size mismatch stores nothing", func(t *testing.T) {
		s := content.New(newBackend(t))
		d := digest.FromString("twelve bytes")
		if _, err := s.Put(t.Context(), "u3", d, 5, strings.NewReader("twelve bytes")); !errors.Is(err, content.ErrSizeMismatch) {
			t.Fatalf("got %v, want ErrSizeMismatch", err)
		}
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, content.ErrNotFound) {
			t.Fatalf("mismatched blob visible: %v", err)
		}
	})
	t.Run("a session checkpointed after each unaligned chunk is finished by another store", func(t *testing.T) {
		b := newBackend(t)
		s := content.New(b)
		data := bytes.Repeat([]byte("abcdefghijklm"), 2_000_000) // 26 MB: several S3 parts
		u, err := s.Upload(t.Context(), "u4", "")
		if err != nil {
			t.Fatal(err)
		}
		cuts := []int{0, 1, 4097, 1 << 20, 3<<20 + 7, 9<<20 + 1, 17 << 20, len(data)}
		var cp []byte
		for i := 0; i < len(cuts)-1; i++ {
			if i > 0 {
				// Each chunk on another node: a store of its own over the
				// same storage, from the last checkpoint only.
				if u, err = content.New(reopen(t, b)).ResumeUpload(t.Context(), "u4", cp); err != nil {
					t.Fatalf("resume before chunk %d: %v", i, err)
				}
				if u.Size() != int64(cuts[i]) {
					t.Fatalf("resumed at %d, want %d", u.Size(), cuts[i])
				}
			}
			if _, err := u.Append(t.Context(), bytes.NewReader(data[cuts[i]:cuts[i+1]])); err != nil {
				t.Fatal(err)
			}
			if i < len(cuts)-2 {
				if cp, err = u.Checkpoint(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		}
		d := digest.FromBytes(data)
		if _, err := u.Commit(t.Context(), d, int64(len(data))); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, s, d, 0); !bytes.Equal(got, data) {
			t.Fatalf("the committed blob differs (%d bytes)", len(got))
		}
		if keys := walk(t, b, "uploads/"); len(keys) != 0 {
			t.Fatalf("staging left after commit: %v", keys)
		}
	})
	t.Run("bytes written after the last checkpoint are not part of the session", func(t *testing.T) {
		b := newBackend(t)
		s := content.New(b)
		first, lost := bytes.Repeat([]byte("kept "), 2<<20), bytes.Repeat([]byte("lost "), 2<<20)
		u, _ := s.Upload(t.Context(), "u8", "")
		_, _ = u.Append(t.Context(), bytes.NewReader(first))
		cp, err := u.Checkpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// A node that appended more and died before its checkpoint was kept.
		_, _ = u.Append(t.Context(), bytes.NewReader(lost))
		if _, err := u.Checkpoint(t.Context()); err != nil {
			t.Fatal(err)
		}
		u, err = content.New(reopen(t, b)).ResumeUpload(t.Context(), "u8", cp)
		if err != nil || u.Size() != int64(len(first)) {
			t.Fatalf("resume from the kept checkpoint: %v, size %d", err, u.Size())
		}
		last := []byte("the end")
		_, _ = u.Append(t.Context(), bytes.NewReader(last))
		want := append(append([]byte{}, first...), last...)
		if _, err := u.Commit(t.Context(), digest.FromBytes(want), int64(len(want))); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, s, digest.FromBytes(want), 0); !bytes.Equal(got, want) {
			t.Fatal("the blob holds bytes written after the checkpoint it resumed from")
		}
	})
	t.Run("a body cut short is an error and keeps what arrived", func(t *testing.T) {
		b := newBackend(t)
		s := content.New(b)
		u, err := s.Upload(t.Context(), "u7", "")
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("x"), 300_000)
		n, err := u.Append(t.Context(), io.MultiReader(bytes.NewReader(data), errReader{io.ErrUnexpectedEOF}))
		if !errors.Is(err, io.ErrUnexpectedEOF) || n != int64(len(data)) || u.Size() != int64(len(data)) {
			t.Fatalf("append: n=%d size=%d err=%v", n, u.Size(), err)
		}
		cp, err := u.Checkpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		u, err = content.New(reopen(t, b)).ResumeUpload(t.Context(), "u7", cp)
		if err != nil || u.Size() != int64(len(data)) {
			t.Fatalf("resume: %v size %d", err, u.Size())
		}
		if _, err := u.Commit(t.Context(), digest.FromBytes(data), -1); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("sha512 is computed at commit", func(t *testing.T) {
		s := content.New(newBackend(t))
		for _, data := range [][]byte{[]byte("sha512 bytes"), bytes.Repeat([]byte("sha512 "), 2<<20)} {
			d := digest.SHA512.FromBytes(data)
			u, err := s.Upload(t.Context(), "u5", "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := u.Append(t.Context(), bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if _, err := u.Commit(t.Context(), d, -1); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, s, d, 0); !bytes.Equal(got, data) {
				t.Fatal("sha512 blob differs")
			}
		}
		if _, err := s.Put(t.Context(), "u5b", digest.SHA512.FromString("other"), -1, strings.NewReader("bytes")); !errors.Is(err, content.ErrDigestMismatch) {
			t.Fatalf("a wrong sha512: %v", err)
		}
	})
	t.Run("a lying upload leaves the blob it names whole, for every digest algorithm", func(t *testing.T) {
		// A pusher who names a blob other repositories use and sends other
		// bytes (large enough to span several parts) must not touch it.
		s := content.New(newBackend(t))
		blob := bytes.Repeat([]byte("victim "), 2<<20)
		junk := bytes.Repeat([]byte("junk!! "), 3<<20)
		for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA384, digest.SHA512} {
			d := alg.FromBytes(blob)
			if _, err := s.Put(t.Context(), "victim-"+alg.String(), d, -1, bytes.NewReader(blob)); err != nil {
				t.Fatalf("%s: %v", alg, err)
			}
			if _, err := s.Put(t.Context(), "liar-"+alg.String(), d, -1, bytes.NewReader(junk)); !errors.Is(err, content.ErrDigestMismatch) {
				t.Fatalf("%s: a lying upload: %v, want ErrDigestMismatch", alg, err)
			}
			if got := readAll(t, s, d, 0); !bytes.Equal(got, blob) {
				t.Fatalf("%s: the blob the lying upload named now reads %d bytes, not its own %d", alg, len(got), len(blob))
			}
		}
	})
	t.Run("cancel and delete remove what they name, walk lists what is left", func(t *testing.T) {
		b := newBackend(t)
		s := content.New(b)
		keep := digest.FromString("keep")
		gone := digest.FromString("gone")
		for _, d := range []digest.Digest{keep, gone} {
			_, _ = s.Put(t.Context(), d.Encoded()[:8], d, -1, strings.NewReader(map[digest.Digest]string{keep: "keep", gone: "gone"}[d]))
		}
		u, _ := s.Upload(t.Context(), "u6", "")
		_, _ = u.Append(t.Context(), bytes.NewReader(bytes.Repeat([]byte("partial"), 2<<20)))
		if _, err := u.Checkpoint(t.Context()); err != nil {
			t.Fatal(err)
		}
		if keys := walk(t, b, "uploads/"); len(keys) == 0 {
			t.Fatal("walk of uploads/ does not list an open session's staging")
		}
		if err := s.CancelUpload(t.Context(), "u6"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(t.Context(), gone); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(t.Context(), gone); err != nil {
			t.Fatalf("deleting twice: %v", err)
		}
		if got, want := walk(t, b, ""), []string{content.BlobKey(keep)}; !slices.Equal(got, want) {
			t.Fatalf("walk: %v, want %v", got, want)
		}
	})
	t.Run("a move makes an object visible at its new key only", func(t *testing.T) {
		b := newBackend(t)
		s := content.New(b)
		d := digest.FromString("moved")
		if _, err := s.Put(t.Context(), "u9", d, -1, strings.NewReader("moved")); err != nil {
			t.Fatal(err)
		}
		to := "blobs/sha256/00/" + strings.Repeat("0", 64)
		if err := b.Move(t.Context(), content.BlobKey(d), to); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Stat(t.Context(), content.BlobKey(d)); !errors.Is(err, content.ErrNotFound) {
			t.Fatalf("still at the old key: %v", err)
		}
		if n, err := b.Stat(t.Context(), to); err != nil || n != 5 {
			t.Fatalf("at the new key: %d %v", n, err)
		}
		if err := b.Move(t.Context(), "blobs/sha256/11/nothing", to); !errors.Is(err, content.ErrNotFound) {
			t.Fatalf("moving nothing: %v", err)
		}
	})
	t.Run("keys that leave the store are refused", func(t *testing.T) {
		b := newBackend(t)
		for _, k := range []string{"../x", "/etc/passwd", "blobs/../../x"} {
			if _, err := b.Writer(t.Context(), k, content.WriterOptions{}); err == nil {
				t.Fatalf("writer for %q accepted", k)
			}
		}
	})
	t.Run("a missing blob is ErrNotFound", func(t *testing.T) {
		s := content.New(newBackend(t))
		d := digest.FromString("never stored")
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, content.ErrNotFound) {
			t.Fatalf("stat: %v", err)
		}
		if _, err := s.Open(t.Context(), d, 0); !errors.Is(err, content.ErrNotFound) {
			t.Fatalf("open: %v", err)
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func readAll(t *testing.T, s *content.Store, d digest.Digest, off int64) []byte {
	t.Helper()
	rc, err := s.Open(t.Context(), d, off)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func walk(t *testing.T, b content.Backend, prefix string) []string {
	t.Helper()
	var keys []string
	prefixes := []string{"blobs/", "uploads/"}
	if prefix != "" {
		prefixes = []string{prefix}
	}
	for _, p := range prefixes {
		if err := b.Walk(t.Context(), p, func(key string, _ int64, _ time.Time) error {
			keys = append(keys, key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// busyNode starts as many uploads on s as the node has cores, each
// waiting for its body, so that an upload started next finds every core
// streaming one; release ends and cancels them.
func busyNode(t *testing.T, s *content.Store) (release func()) {
	n := runtime.GOMAXPROCS(0)
	started := make(chan struct{}, n)
	var pipes []*io.PipeWriter
	done := make(chan struct{}, n)
	for i := range n {
		u, err := s.Upload(t.Context(), fmt.Sprintf("busy-%d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		go func() {
			_, _ = u.AppendAhead(t.Context(), &signalReader{r: pr, first: started})
			_ = u.Cancel(t.Context())
			done <- struct{}{}
		}()
	}
	for range n {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the busy uploads did not start reading within 10 s")
		}
	}
	return func() {
		for _, pw := range pipes {
			pw.Close()
		}
		for range n {
			<-done
		}
	}
}

// signalReader sends on first once, at its first Read.
type signalReader struct {
	r     io.Reader
	first chan<- struct{}
	sent  bool
}

func (s *signalReader) Read(p []byte) (int, error) {
	if !s.sent {
		s.sent = true
		s.first <- struct{}{}
	}
	return s.r.Read(p)
}
