package fs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

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
	if err := os.Truncate(filepath.Join(dir, "uploads", "cut.data"), survived); err != nil {
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

// TestABlobJustUploadedIsInThePageCache: the bytes an upload writes with
// O_DIRECT skip the page cache; the writer has the kernel read them back
// (readBack), so the blob's first reader (a peer region's replication
// fetch, the first pull of a rollout) reads memory, not the disk. Pages
// resident are counted with mincore; the kernel's read-back is
// asynchronous, so the test waits for it, at most 10 s.
func TestABlobJustUploadedIsInThePageCache(t *testing.T) {
	dir := t.TempDir()
	b, err := contentfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := content.New(b)
	data := bytes.Repeat([]byte("resident"), 4<<20) // 32 MiB
	d := digest.FromBytes(data)
	if _, err := s.Put(t.Context(), "warm", d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.FromSlash(content.BlobKey(d)))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, len(data), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	pages := make([]byte, (len(data)+os.Getpagesize()-1)/os.Getpagesize())
	resident := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&pages[0]))); errno != 0 {
			t.Fatal(errno)
		}
		resident = 0
		for _, p := range pages {
			resident += int(p & 1)
		}
		if resident == len(pages) {
			return
		}
	}
	t.Fatalf("%d of the blob's %d pages in the page cache 10 s after its upload", resident, len(pages))
}
