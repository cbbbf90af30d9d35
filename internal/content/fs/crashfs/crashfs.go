// Package crashfs is a file layer for crash tests: a content/fs.FS in
// memory that keeps, besides what was written, what was made durable — a
// file's bytes by its Sync, a directory's entries (creates, renames,
// removes) by the directory's own Sync — and after a simulated crash holds
// only that, as a disk holds after a power cut. It is Pebble's crashable
// in-memory filesystem (vfs.NewCrashableMem, CrashClone) behind the
// interface the content backend uses; only tests import it.
package crashfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	contentfs "github.com/georeg/georeg/internal/content/fs"
)

// FS is a crashable in-memory filesystem, safe for concurrent use.
type FS struct {
	mem *vfs.MemFS

	mu     sync.Mutex
	onSync func(name string)
}

var _ contentfs.FS = (*FS)(nil)

// New returns an empty filesystem.
func New() *FS { return &FS{mem: vfs.NewCrashableMem()} }

// OnSync sets fn to be called before every sync of a file or directory,
// in the goroutine that syncs: a crash test crashes there, so each sync
// point is a crash point. fn may call Crash.
func (f *FS) OnSync(fn func(name string)) {
	f.mu.Lock()
	f.onSync = fn
	f.mu.Unlock()
}

// Crash returns the filesystem as a machine would find it after a crash
// now: every byte and directory entry synced, nothing else. f itself goes
// on unchanged.
func (f *FS) Crash() *FS {
	return &FS{mem: f.mem.CrashClone(vfs.CrashCloneCfg{})}
}

func (f *FS) synced(name string) {
	f.mu.Lock()
	fn := f.onSync
	f.mu.Unlock()
	if fn != nil {
		fn(name)
	}
}

// MkdirAll implements contentfs.FS. The new directories' entries are not
// durable until their parents are synced.
func (f *FS) MkdirAll(dir string, perm fs.FileMode) error { return f.mem.MkdirAll(dir, perm) }

// OpenFile implements contentfs.FS for the flags the backend uses:
// O_RDONLY, O_WRONLY, O_RDWR, O_CREATE, O_TRUNC. O_TRUNC makes a new,
// unsynced file under the name (after a crash the name may still hold
// what was synced before).
func (f *FS) OpenFile(name string, flag int, _ fs.FileMode) (contentfs.File, error) {
	write := flag&(os.O_WRONLY|os.O_RDWR) != 0
	_, statErr := f.mem.Stat(name)
	var (
		vf  vfs.File
		err error
	)
	switch {
	case flag&os.O_CREATE != 0 && (flag&os.O_TRUNC != 0 || errors.Is(statErr, fs.ErrNotExist)):
		vf, err = f.mem.Create(name, vfs.WriteCategoryUnspecified)
	case write:
		vf, err = f.mem.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
	default:
		vf, err = f.mem.Open(name)
	}
	if err != nil {
		return nil, err
	}
	return &file{fs: f, name: name, f: vf}, nil
}

// Stat implements contentfs.FS.
func (f *FS) Stat(name string) (fs.FileInfo, error) { return f.mem.Stat(name) }

// Rename implements contentfs.FS. Durable once the target's directory
// is synced.
func (f *FS) Rename(from, to string) error { return f.mem.Rename(from, to) }

// Remove implements contentfs.FS.
func (f *FS) Remove(name string) error { return f.mem.Remove(name) }

// RemoveAll implements contentfs.FS.
func (f *FS) RemoveAll(name string) error { return f.mem.RemoveAll(name) }

// ReadDir implements contentfs.FS.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	names, err := f.mem.List(name)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		fi, err := f.mem.Stat(f.mem.PathJoin(name, n))
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, fs.FileInfoToDirEntry(fi))
	}
	return out, nil
}

// file is an open file with a position (vfs files have none to seek).
type file struct {
	fs     *FS
	name   string
	f      vfs.File
	off    int64
	closed bool // vfs files panic when closed twice; os.File says so
}

func (f *file) Read(p []byte) (int, error) {
	n, err := f.f.ReadAt(p, f.off)
	f.off += int64(n)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (f *file) Write(p []byte) (int, error) {
	// A copy: Pebble's test builds may scribble over what they are given.
	n, err := f.f.WriteAt(slices.Clone(p), f.off)
	f.off += int64(n)
	return n, err
}

func (f *file) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		fi, err := f.f.Stat()
		if err != nil {
			return 0, err
		}
		offset += fi.Size()
	default:
		return 0, errors.New("crashfs: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("crashfs: negative offset")
	}
	f.off = offset
	return offset, nil
}

// Truncate cuts the file to size: its first size bytes under the same
// name in a new, unsynced file (vfs files cannot shrink).
func (f *file) Truncate(size int64) error {
	fi, err := f.f.Stat()
	if err != nil {
		return err
	}
	if size == fi.Size() {
		return nil
	}
	keep := make([]byte, min(size, fi.Size()))
	if _, err := f.f.ReadAt(keep, 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	nf, err := f.fs.mem.Create(f.name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := nf.WriteAt(append(keep, make([]byte, size-int64(len(keep)))...), 0); err != nil {
		nf.Close()
		return err
	}
	f.f.Close()
	f.f = nf
	return nil
}

func (f *file) Sync() error {
	f.fs.synced(f.name)
	return f.f.Sync()
}

func (f *file) Close() error {
	if f.closed {
		return os.ErrClosed
	}
	f.closed = true
	return f.f.Close()
}
