// Package contenttest is the suite every content.Backend passes, run
// through content.Store so it checks the promises the registry relies on:
// verified commits, resumable staging, offsets, deletes and walks.
package contenttest

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
)

// Run runs the suite against backends made by newBackend, one per test.
func Run(t *testing.T, newBackend func(t *testing.T) content.Backend) {
	t.Run("a blob put whole reads back from any offset", func(t *testing.T) {
		s := content.New(newBackend(t))
		data := bytes.Repeat([]byte("0123456789"), 300_000) // spans several buffers
		d := digest.FromBytes(data)
		if _, err := s.Put(t.Context(), "u1", d, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if size, err := s.Stat(t.Context(), d); err != nil || size != int64(len(data)) {
			t.Fatalf("stat: %d %v", size, err)
		}
		for _, off := range []int64{0, 1, 4095, 1 << 20, int64(len(data)) - 1} {
			rc, err := s.Open(t.Context(), d, off)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, data[off:]) {
				t.Fatalf("offset %d: %d bytes differ", off, len(got))
			}
		}
	})
	t.Run("a digest mismatch stores nothing", func(t *testing.T) {
		b := newBackend(t)
		s := content.New(b)
		wrong := digest.FromString("something else")
		_, err := s.Put(t.Context(), "u2", wrong, -1, strings.NewReader("actual bytes"))
		if !errors.Is(err, content.ErrDigestMismatch) {
			t.Fatalf("got %v, want ErrDigestMismatch", err)
		}
		if _, err := s.Stat(t.Context(), wrong); !errors.Is(err, content.ErrNotFound) {
			t.Fatalf("mismatched blob visible: %v", err)
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
	})
	t.Run("an upload appended in unaligned chunks and resumed commits the right bytes", func(t *testing.T) {
		s := content.New(newBackend(t))
		data := bytes.Repeat([]byte("abcdefghijklm"), 500_000)
		u, err := s.Upload(t.Context(), "u4")
		if err != nil {
			t.Fatal(err)
		}
		cuts := []int{0, 1, 4097, 1 << 20, 3<<20 + 7, len(data)}
		for i := 0; i < 3; i++ {
			if _, err := u.Append(t.Context(), bytes.NewReader(data[cuts[i]:cuts[i+1]])); err != nil {
				t.Fatal(err)
			}
		}
		// As after a restart: reopen from the backend alone.
		u, err = s.ResumeUpload(t.Context(), "u4")
		if err != nil || u.Size() != int64(cuts[3]) {
			t.Fatalf("resume: %v size %d", err, u.Size())
		}
		for i := 3; i < len(cuts)-1; i++ {
			if _, err := u.Append(t.Context(), bytes.NewReader(data[cuts[i]:cuts[i+1]])); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := u.Commit(t.Context(), digest.FromBytes(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a body cut short is an error and keeps what arrived", func(t *testing.T) {
		s := content.New(newBackend(t))
		u, err := s.Upload(t.Context(), "u7")
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("x"), 300_000)
		n, err := u.Append(t.Context(), io.MultiReader(bytes.NewReader(data), errReader{io.ErrUnexpectedEOF}))
		if !errors.Is(err, io.ErrUnexpectedEOF) || n != int64(len(data)) || u.Size() != int64(len(data)) {
			t.Fatalf("append: n=%d size=%d err=%v", n, u.Size(), err)
		}
		u, err = s.ResumeUpload(t.Context(), "u7")
		if err != nil || u.Size() != int64(len(data)) {
			t.Fatalf("resume: %v size %d", err, u.Size())
		}
	})
	t.Run("sha512 is computed at commit", func(t *testing.T) {
		s := content.New(newBackend(t))
		data := []byte("sha512 bytes")
		if _, err := s.Put(t.Context(), "u5", digest.SHA512.FromBytes(data), -1, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
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
		u, _ := s.Upload(t.Context(), "u6")
		_, _ = u.Append(t.Context(), strings.NewReader("partial"))
		if err := u.Cancel(t.Context()); err != nil {
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
	t.Run("keys that leave the store are refused", func(t *testing.T) {
		b := newBackend(t)
		for _, k := range []string{"../x", "/etc/passwd", "blobs/../../x"} {
			if _, err := b.Writer(t.Context(), k, false); err == nil {
				t.Fatalf("writer for %q accepted", k)
			}
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func walk(t *testing.T, b content.Backend, prefix string) []string {
	t.Helper()
	var keys []string
	for _, p := range []string{"blobs/", "uploads/"} {
		if err := b.Walk(t.Context(), prefix+p, func(key string, _ int64, _ time.Time) error {
			keys = append(keys, key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(keys)
	return keys
}
