package fs_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	contentfs "github.com/georeg/georeg/internal/content/fs"
)

// entries lists dir's names, sorted; none when it does not exist.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func walkKeys(t *testing.T, b content.Backend, prefix string) []string {
	t.Helper()
	var keys []string
	if err := b.Walk(t.Context(), prefix, func(key string, _ int64, _ time.Time) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// staged starts upload session id on s with data in it, checkpointed.
func staged(t *testing.T, s *content.Store, id string, data []byte) *content.Upload {
	t.Helper()
	u, err := s.Upload(t.Context(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Append(t.Context(), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	return u
}

// An upload session stages its bytes in one file, uploads/<id>.data: no
// directory is made for it, and none is left when it ends. Walk lists it
// under its key, uploads/<id>/data (ids hold dots: region.hex).
func TestAnUploadIsStagedInOneFileWithoutADirectory(t *testing.T) {
	dir := t.TempDir()
	b, err := contentfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := content.New(b)
	data := []byte("one file per session")
	u := staged(t, s, "eastus.0a1b", data)
	uploads := filepath.Join(dir, "uploads")
	if got := entries(t, uploads); !slices.Equal(got, []string{"eastus.0a1b.data"}) {
		t.Fatalf("uploads holds %v, want the one staging file", got)
	}
	for _, prefix := range []string{"uploads/", "uploads/eastus.0a1b/", "uploads/eastus.0a1b/data"} {
		if got := walkKeys(t, b, prefix); !slices.Equal(got, []string{"uploads/eastus.0a1b/data"}) {
			t.Errorf("Walk(%q) = %v, want the session's data key", prefix, got)
		}
	}
	if got := walkKeys(t, b, "uploads/eastus.0a/"); len(got) != 0 {
		t.Errorf("Walk of another session's prefix = %v, want nothing", got)
	}
	d := digest.FromBytes(data)
	if _, err := u.Commit(t.Context(), d, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, uploads); len(got) != 0 {
		t.Fatalf("uploads holds %v after the commit, want nothing", got)
	}
	if n, err := s.Stat(t.Context(), d); err != nil || n != int64(len(data)) {
		t.Fatalf("the blob: %d bytes, %v", n, err)
	}
	// A session cancelled goes whole, and the uploads directory stays for
	// the sessions that may be starting in it.
	u, err = s.Upload(t.Context(), "eastus.0c", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CancelUpload(t.Context(), "eastus.0c"); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, uploads); len(got) != 0 {
		t.Fatalf("uploads holds %v after a cancel, want nothing", got)
	}
	if fi, err := os.Stat(uploads); err != nil || !fi.IsDir() {
		t.Fatalf("the uploads directory went: %v", err)
	}
}

// A session an earlier version staged in its own directory
// (uploads/<id>/data) is listed, read, resumed and committed where it is,
// and its directory goes with it; one cancelled goes whole.
func TestASessionStagedByAnEarlierVersionStillResumes(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("staged before the upgrade "), 1000)
	for _, id := range []string{"eastus.old", "eastus.gone"} {
		if err := os.MkdirAll(filepath.Join(dir, "uploads", id), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "uploads", id, "data"), data[:10_000], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := contentfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := content.New(b)
	if got := walkKeys(t, b, "uploads/"); !slices.Equal(got, []string{"uploads/eastus.gone/data", "uploads/eastus.old/data"}) {
		t.Fatalf("Walk = %v, want both earlier sessions' keys", got)
	}
	r, err := s.OpenUpload(t.Context(), "eastus.old")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, data[:10_000]) {
		t.Fatalf("read %d bytes of the earlier session, want 10000", len(got))
	}
	u, err := s.ResumeUpload(t.Context(), "eastus.old", nil)
	if err != nil || u.Size() != 10_000 {
		t.Fatalf("resume: %v, size %d", err, u.Size())
	}
	if _, err := u.Append(t.Context(), bytes.NewReader(data[10_000:])); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Commit(t.Context(), digest.FromBytes(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := s.CancelUpload(t.Context(), "eastus.gone"); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, filepath.Join(dir, "uploads")); len(got) != 0 {
		t.Fatalf("uploads holds %v, want nothing: both sessions ended", got)
	}
}

// Deleting session x.data (an id may end so) deletes its own files, not
// session x's data file, whose name is the same.
func TestDeletingASessionLeavesAnotherWhoseFileHasItsName(t *testing.T) {
	dir := t.TempDir()
	b, err := contentfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := content.New(b)
	for _, id := range []string{"x", "x.data"} {
		staged(t, s, id, []byte(id))
	}
	if err := s.CancelUpload(t.Context(), "x.data"); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, filepath.Join(dir, "uploads")); !slices.Equal(got, []string{"x.data"}) {
		t.Fatalf("uploads holds %v, want session x's file alone", got)
	}
}
