package fs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/content/contenttest"
	contentfs "github.com/georeg/georeg/internal/content/fs"
)

func TestBackend(t *testing.T) {
	contenttest.Run(t, func(t *testing.T) content.Backend {
		b, err := contentfs.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, reopen)
}

// reopen opens another backend on b's directory.
func reopen(t *testing.T, b content.Backend) content.Backend {
	again, err := contentfs.Open(b.(*contentfs.Backend).Root())
	if err != nil {
		t.Fatal(err)
	}
	return again
}

// TestBackendOnTmpfs runs the suite on tmpfs too: a second filesystem,
// one that refused O_DIRECT before Linux 6.6, so the fallback to buffered
// writes runs where the kernel is older.
func TestBackendOnTmpfs(t *testing.T) {
	contenttest.Run(t, func(t *testing.T) content.Backend {
		dir, err := os.MkdirTemp("/dev/shm", "georeg-test-")
		if err != nil {
			t.Fatalf("tmpfs at /dev/shm: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		b, err := contentfs.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, reopen)
}

// TestAResumeAfterLostBytesContinuesFromWhatSurvived: a checkpoint counts
// bytes the file no longer holds (unsynced, lost in a power cut); the
// session continues from the bytes that survived, rehashed, so the
// client's next status says where to resume and the blob still verifies.
func TestAResumeAfterLostBytesContinuesFromWhatSurvived(t *testing.T) {
	dir := t.TempDir()
	b, err := contentfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := content.New(b)
	data := bytes.Repeat([]byte("survivor "), 100_000)
	u, _ := s.Upload(t.Context(), "cut", "")
	if _, err := u.Append(t.Context(), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	cp, err := u.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const survived = 500_000
	if err := os.Truncate(filepath.Join(dir, "uploads", "cut", "data"), survived); err != nil {
		t.Fatal(err)
	}
	u, err = s.ResumeUpload(t.Context(), "cut", cp)
	if err != nil || u.Size() != survived {
		t.Fatalf("resume: %v, size %d, want %d", err, u.Size(), survived)
	}
	if _, err := u.Append(t.Context(), bytes.NewReader(data[survived:])); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Commit(t.Context(), digest.FromBytes(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}
