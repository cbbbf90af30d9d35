package fs_test

import (
	"os"
	"testing"

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
	})
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
	})
}
