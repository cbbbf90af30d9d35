// Package fs is a content.Backend on a local filesystem.
//
// Durability: Commit fsyncs the file, renames it into place and fsyncs the
// directory, so a committed blob survives kill -9 and power loss.
//
// Writes: the part of each write that starts at a 4 KiB-aligned offset
// from a 4 KiB-aligned buffer, in whole 4 KiB blocks, goes to the disk with
// O_DIRECT; the rest (the tail of a blob, a chunk boundary that is not
// aligned) is written through the page cache, and writeback of each 8 MiB of
// it is started at once (sync_file_range), so the final fsync waits for
// little. A profile of 8 concurrent uploads showed two thirds of their CPU
// in copying into the page cache; O_DIRECT skips that copy. So that a blob
// just uploaded is read from memory, not from disk, the first time (its
// first readers are every peer region's replication fetch and the first
// pulls of a rollout), each range written with O_DIRECT is read back into
// the page cache by the kernel at once (POSIX_FADV_WILLNEED, see readBack):
// the disk's DMA fills the cache, no CPU copies a byte, and the upload does
// not wait for it. A filesystem that refuses O_DIRECT (tmpfs) gets
// buffered writes.
//
// Every file operation goes through an FS: the operating system's in
// production, and in crash tests a file layer that forgets what was not
// synced (crashfs), which is how the order of syncs above is tested.
package fs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/georeg/georeg/internal/content"
)

// flushEvery is how many buffered bytes a writer lets pile up before it
// starts their writeback.
const flushEvery = 8 << 20

// directAlign is the alignment O_DIRECT needs of offsets, lengths and
// buffers: a page, which covers every logical block size in use.
const directAlign = 4096

// Backend keeps each key as a file under a root directory.
type Backend struct {
	root     string
	fsys     FS
	noDirect atomic.Bool // set once the filesystem refused O_DIRECT
}

// Open returns a backend rooted at dir of the operating system's
// filesystem, creating it.
func Open(dir string) (*Backend, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return OpenFS(abs, OS)
}

// OpenFS returns a backend rooted at dir (an absolute path) of fsys,
// creating it.
func OpenFS(dir string, fsys FS) (*Backend, error) {
	b := &Backend{root: dir, fsys: fsys}
	// The directories made here are durable before anything is stored in
	// them: each one's entry is synced in its parent.
	var made []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := fsys.Stat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		made = append(made, d)
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("content root: %w", err)
	}
	for _, d := range made {
		if err := b.syncDir(filepath.Dir(d)); err != nil {
			return nil, fmt.Errorf("content root: %w", err)
		}
	}
	return b, nil
}

// Root returns the directory the backend keeps its files under.
func (b *Backend) Root() string { return b.root }

// path maps a key to a file, refusing keys that would leave the root: a
// staging key to its file directly under uploads (staging.go).
func (b *Backend) path(key string) (string, error) {
	if err := content.CheckKey(key); err != nil {
		return "", err
	}
	if id, name, ok := stagingName(key); ok {
		return b.stagingFile(id, name), nil
	}
	return filepath.Join(b.root, filepath.FromSlash(key)), nil
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return content.ErrNotFound
	}
	return err
}

// Stat implements content.Backend.
func (b *Backend) Stat(_ context.Context, key string) (int64, error) {
	p, err := b.existing(key)
	if err != nil {
		return 0, err
	}
	fi, err := b.fsys.Stat(p)
	if err != nil {
		return 0, notFound(err)
	}
	return fi.Size(), nil
}

// Reader implements content.Backend. On the operating system's
// filesystem it returns the *os.File itself, so io.Copy to a TCP
// connection uses sendfile.
func (b *Backend) Reader(_ context.Context, key string, offset int64) (io.ReadCloser, error) {
	p, err := b.existing(key)
	if err != nil {
		return nil, err
	}
	f, err := b.fsys.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, notFound(err)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// state is a staging file's checkpoint: its size.
type state struct {
	Size int64 `json:"size"`
}

// Writer implements content.Backend. A staging object is one file;
// resuming truncates it to its checkpoint's size (bytes written after the
// checkpoint were never acknowledged) and fails with ErrCheckpointLost
// when it holds fewer (unsynced bytes lost in a power cut). Target is not
// needed: Commit renames.
func (b *Backend) Writer(_ context.Context, key string, opts content.WriterOptions) (content.Writer, error) {
	p, err := b.path(key)
	if opts.Existing || opts.Resume != nil {
		p, err = b.existing(key) // maybe staged by an earlier version
	}
	if err != nil {
		return nil, err
	}
	if err := b.fsys.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	flag := os.O_WRONLY | os.O_CREATE
	var want int64
	switch {
	case opts.Existing:
	case opts.Resume == nil:
		flag |= os.O_TRUNC
	default:
		var st state
		if err := json.Unmarshal(opts.Resume, &st); err != nil {
			return nil, fmt.Errorf("staging state of %s: %w", key, err)
		}
		want = st.Size
	}
	f, err := b.fsys.OpenFile(p, flag, 0o644)
	if err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, err
	}
	if opts.Resume != nil {
		if size < want {
			f.Close()
			return nil, fmt.Errorf("%s holds %d bytes, its checkpoint %d: %w", key, size, want, content.ErrCheckpointLost)
		}
		if size > want {
			if err := f.Truncate(want); err != nil {
				f.Close()
				return nil, err
			}
			if size, err = f.Seek(want, io.SeekStart); err != nil {
				f.Close()
				return nil, err
			}
		}
	}
	w := &writer{b: b, f: f, path: p, size: size, flushed: size}
	if osf, ok := f.(*os.File); ok {
		w.osf, w.fd = osf, int(osf.Fd())
	}
	return w, nil
}

// Move implements content.Backend: a rename, made durable.
func (b *Backend) Move(_ context.Context, from, to string) error {
	src, err := b.existing(from)
	if err != nil {
		return err
	}
	dst, err := b.path(to)
	if err != nil {
		return err
	}
	return b.rename(src, dst)
}

// Delete implements content.Backend. Deleting an upload's data deletes the
// whole session's staging.
func (b *Backend) Delete(_ context.Context, key string) error {
	if id, name, ok := stagingName(key); ok && name == "data" {
		if err := content.CheckKey(key); err != nil {
			return err
		}
		return b.deleteSession(id)
	}
	p, err := b.existing(key)
	if err != nil {
		return err
	}
	if err := b.fsys.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if b.inLegacySession(p) {
		_ = b.fsys.Remove(filepath.Dir(p)) // only succeeds when empty
	}
	return nil
}

// Walk implements content.Backend.
func (b *Backend) Walk(ctx context.Context, prefix string, fn func(key string, size int64, modified time.Time) error) error {
	dir := strings.TrimSuffix(prefix, "/")
	if strings.HasPrefix(dir, stagingDir+"/") {
		// A session's files have no directory of their own (staging.go):
		// every staging file is walked, those under prefix kept.
		dir, fn = stagingDir, underPrefix(prefix, fn)
	}
	start, err := b.path(dir)
	if err != nil {
		return err
	}
	uploads := filepath.Join(b.root, stagingDir)
	visit := func(p string, fi fs.FileInfo) error {
		rel, _ := filepath.Rel(b.root, p)
		key := filepath.ToSlash(rel)
		if filepath.Dir(p) == uploads {
			if k, ok := stagingKey(filepath.Base(p)); ok {
				key = k
			}
		}
		return fn(key, fi.Size(), fi.ModTime())
	}
	fi, err := b.fsys.Stat(start)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return visit(start, fi)
	}
	return b.walk(ctx, start, visit)
}

// walk calls visit for each file under dir, in lexical order, depth
// first; what is removed while walking is skipped.
func (b *Backend) walk(ctx context.Context, dir string, visit func(p string, fi fs.FileInfo) error) error {
	entries, err := b.fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if err := b.walk(ctx, p, visit); err != nil {
				return err
			}
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed while walking
		}
		if err := visit(p, fi); err != nil {
			return err
		}
	}
	return nil
}

type writer struct {
	b       *Backend
	f       File
	osf     *os.File // f on the operating system's filesystem: O_DIRECT and early writeback
	fd      int
	path    string
	size    int64
	direct  bool  // O_DIRECT is set on fd now
	dirty   int64 // buffered bytes written since writeback last started
	flushed int64 // offset up to which writeback has been started
}

func (w *writer) Write(p []byte) (int, error) {
	total := 0
	if w.osf != nil && w.size%directAlign == 0 && len(p) >= directAlign && !w.b.noDirect.Load() &&
		uintptr(unsafe.Pointer(&p[0]))%directAlign == 0 {
		n := len(p) &^ (directAlign - 1)
		k, err := w.writeDirect(p[:n])
		total += k
		if err != nil {
			return total, err
		}
		p = p[k:]
	}
	if len(p) == 0 {
		return total, nil
	}
	k, err := w.writeBuffered(p)
	return total + k, err
}

// writeDirect writes p (aligned) with O_DIRECT. It returns 0, nil when the
// filesystem refuses O_DIRECT, so the caller writes p buffered.
func (w *writer) writeDirect(p []byte) (int, error) {
	if !w.direct {
		if err := w.setDirect(true); err != nil {
			w.b.noDirect.Store(true)
			return 0, nil
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if errors.Is(err, unix.EINVAL) && n == 0 {
		w.b.noDirect.Store(true)
		return 0, nil
	}
	w.flushed = w.size
	if n > 0 {
		w.readBack(w.size-int64(n), int64(n))
	}
	return n, err
}

// readBackStep is the most one WILLNEED asks of the kernel: it reads at
// most a device's readahead window per call (128 KiB by default), and
// drops the rest of a larger range.
const readBackStep = 128 << 10

// readBack has the kernel read [off, off+n) of the file into the page cache
// in the background. The range was written with O_DIRECT, so the cache
// holds none of it; without this the first read of the blob comes from the
// disk at its readahead speed (0.9 GB/s against 2.3 GB/s for large direct
// reads on the bench machine, docs/performance.md). Advice only: an error
// changes nothing but speed.
func (w *writer) readBack(off, n int64) {
	for end := off + n; off < end; off += readBackStep {
		_ = unix.Fadvise(w.fd, off, min(readBackStep, end-off), unix.FADV_WILLNEED)
	}
}

func (w *writer) writeBuffered(p []byte) (int, error) {
	if w.direct {
		if err := w.setDirect(false); err != nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	w.dirty += int64(n)
	if w.dirty >= flushEvery && w.osf != nil {
		// Start writeback now; Commit's fsync then waits for little. An
		// error here is only advisory: fsync reports real failures.
		_ = unix.SyncFileRange(w.fd, w.flushed, w.size-w.flushed, unix.SYNC_FILE_RANGE_WRITE)
		w.flushed, w.dirty = w.size, 0
	}
	return n, err
}

func (w *writer) setDirect(on bool) error {
	flags, err := unix.FcntlInt(uintptr(w.fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		flags |= unix.O_DIRECT
	} else {
		flags &^= unix.O_DIRECT
	}
	if _, err := unix.FcntlInt(uintptr(w.fd), unix.F_SETFL, flags); err != nil {
		return err
	}
	w.direct = on
	return nil
}

func (w *writer) Size() int64 { return w.size }

// Checkpoint implements content.Writer: the bytes are in the file (not
// synced: a checkpoint survives the process, and a power cut is caught
// when resuming).
func (w *writer) Checkpoint(context.Context) ([]byte, error) {
	if err := w.f.Close(); err != nil {
		return nil, err
	}
	return json.Marshal(state{Size: w.size})
}

func (w *writer) Commit(_ context.Context, key string) error {
	dst, err := w.b.path(key)
	if err != nil {
		w.f.Close()
		return err
	}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return fmt.Errorf("fsync: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	return w.b.rename(w.path, dst)
}

// rename moves src to dst durably: the rename and, for a new fan-out
// directory, its own entry are synced; an upload's emptied directory goes.
func (b *Backend) rename(src, dst string) error {
	dir := filepath.Dir(dst)
	_, statErr := b.fsys.Stat(dir)
	newDir := errors.Is(statErr, fs.ErrNotExist)
	if err := b.fsys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := b.fsys.Rename(src, dst); err != nil {
		return notFound(err)
	}
	if b.inLegacySession(src) {
		_ = b.fsys.Remove(filepath.Dir(src)) // an earlier version's session directory, now empty
	}
	if err := b.syncDir(dir); err != nil {
		return err
	}
	if newDir {
		// The new fan-out directory's own entry must be durable too.
		for d := filepath.Dir(dir); len(d) >= len(b.root); d = filepath.Dir(d) {
			if err := b.syncDir(d); err != nil {
				return err
			}
			if d == b.root {
				break
			}
		}
	}
	return nil
}

func (w *writer) Cancel(_ context.Context) error {
	w.f.Close()
	err := w.b.fsys.Remove(w.path)
	if w.b.inLegacySession(w.path) {
		_ = w.b.fsys.Remove(filepath.Dir(w.path))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// syncDir makes a rename into dir durable.
func (b *Backend) syncDir(dir string) error {
	d, err := b.fsys.OpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
