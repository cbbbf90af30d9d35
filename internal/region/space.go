package region

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// Running out of storage is an ordinary state of a region (invariant 10),
// not an internal error:
//
//	writable --(a write fails for space, or free space < minFreeSpace)--> full
//	full --(free space >= minFreeSpace and a probe write succeeds)--> writable
//
// While full the region serves pulls, refuses pushes at once with 507
// STORAGE_FULL naming itself and the cause (with Retry-After), says so in
// its status (the front door sends pushes elsewhere and keeps sending it
// pulls), and keeps retrying replication, which resumes as soon as space
// is back (SpaceBack wakes the followers). The monitor checks every
// second, from local state only.

// spaceEvery is how often the monitor looks at free space.
const spaceEvery = time.Second

// space is the region's storage state; safe for concurrent use.
type space struct {
	mu       sync.Mutex
	full     bool
	readOnly bool // the metadata store refuses writes (not a lack of space)
	reason   string
	since    time.Time
	back     chan struct{} // closed and replaced when space comes back
}

func newSpace() *space { return &space{back: make(chan struct{})} }

// IsNoSpace reports whether err says the storage is full: ENOSPC or
// EDQUOT from a file, SQLite's SQLITE_FULL, PostgreSQL's disk_full
// (53100), an object store's insufficient storage.
func IsNoSpace(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || ocierr.StorageFull.Is(err) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"database or disk is full", "SQLSTATE 53100", "XMinioStorageFull", "InsufficientStorage", "no space left on device"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// refusesWrites reports whether err says the metadata store takes no
// writes though it has space: SQLite's read-only database, PostgreSQL's
// read-only transaction (a standby, default_transaction_read_only).
func refusesWrites(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, s := range []string{"attempt to write a readonly database", "SQLSTATE 25006", "read-only transaction"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// markFull records that the region takes no writes, for reason: out of
// space, or (readOnly) its metadata store refuses writes.
func (r *Region) markFull(reason string, readOnly bool) {
	sp := r.space
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if !sp.full {
		sp.full, sp.since = true, r.now()
		r.log.Error("region takes no writes: pushes are refused until it does again; pulls are served", "reason", reason)
	}
	sp.reason, sp.readOnly = reason, readOnly
}

// NoteWrite marks the region not writable when err says storage is full
// (and returns STORAGE_FULL) or the metadata store refuses writes (and
// returns READ_ONLY); other errors pass unchanged.
func (r *Region) NoteWrite(err error) error {
	switch {
	case IsNoSpace(err):
		r.markFull(err.Error(), false)
	case refusesWrites(err):
		r.markFull("its metadata store refuses writes: "+err.Error(), true)
	default:
		return err
	}
	return r.storageFull()
}

// storageFull is the error a push gets while the region is full.
func (r *Region) storageFull() error {
	sp := r.space
	sp.mu.Lock()
	reason, since, readOnly := sp.reason, sp.since, sp.readOnly
	sp.mu.Unlock()
	if readOnly {
		return &ocierr.Error{Code: ocierr.ReadOnly, RetryAfter: 30 * time.Second,
			Message: fmt.Sprintf("region %s takes no writes now (%s); nothing was stored: push through another region, or retry later", r.cfg.Name, reason),
			Detail:  map[string]any{"region": r.cfg.Name, "reason": reason, "since": since}}
	}
	return &ocierr.Error{Code: ocierr.StorageFull, RetryAfter: 30 * time.Second,
		Message: fmt.Sprintf("region %s is out of storage space (%s); nothing was stored: push through another region, or retry once space is freed", r.cfg.Name, reason),
		Detail:  map[string]any{"region": r.cfg.Name, "reason": reason, "since": since}}
}

// Writable reports whether the region takes pushes now, and why not. It
// reads local state only.
func (r *Region) Writable() (bool, string) {
	sp := r.space
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return !sp.full, sp.reason
}

// CheckWritable returns STORAGE_FULL while the region is out of space.
func (r *Region) CheckWritable() error {
	if ok, _ := r.Writable(); !ok {
		return r.storageFull()
	}
	return nil
}

// SpaceBack returns a channel closed when the region next becomes
// writable again: replication waiting on a full disk resumes at once.
func (r *Region) SpaceBack() <-chan struct{} {
	sp := r.space
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.back
}

// freeBytes returns the free space of the filesystem holding the data
// directory; ok false when the region's stores are not on it (S3 and
// PostgreSQL: their errors tell).
func (r *Region) freeBytes() (int64, bool) {
	if r.cfg.Content.Driver == "s3" && r.cfg.Metadata.Driver == "postgres" {
		return 0, false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(r.cfg.DataDir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * st.Bsize, true
}

// probeWrite writes a row of the metadata store, and writes and removes a
// small staging upload through the content store: what a push needs
// first. (An S3 bucket's upload buffers a part before it writes:
// there the next real write tells.)
func (r *Region) probeWrite(ctx context.Context) error {
	if err := r.db.Update(ctx, func(tx *meta.Tx) error { return tx.SetRegionState(ctx, spaceProbe, r.now().Unix()) }); err != nil {
		return err
	}
	if r.cfg.Content.Driver == "s3" {
		return nil
	}
	up, err := r.store.Upload(ctx, spaceProbe, "")
	if err != nil {
		return err
	}
	_, err = up.Append(ctx, bytes.NewReader(make([]byte, 64<<10)))
	if cerr := up.Cancel(ctx); err == nil {
		err = cerr
	}
	return err
}

// spaceProbe is the staging id of the monitor's probe write.
const spaceProbe = "space-probe"

// checkSpace is one look of the monitor.
func (r *Region) checkSpace(ctx context.Context) {
	free, known := r.freeBytes()
	low := known && r.cfg.MinFreeSpace > 0 && free < r.cfg.MinFreeSpace
	if low {
		r.markFull(fmt.Sprintf("%d MiB free on its data disk, below region.minFreeSpace %d MiB", free>>20, r.cfg.MinFreeSpace>>20), false)
		return
	}
	sp := r.space
	sp.mu.Lock()
	full := sp.full
	sp.mu.Unlock()
	if !full {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, spaceEvery)
	err := r.probeWrite(pctx)
	cancel()
	if err != nil {
		_ = r.NoteWrite(err) // the reason as it is now
		return
	}
	sp.mu.Lock()
	sp.full, sp.readOnly, sp.reason = false, false, ""
	close(sp.back)
	sp.back = make(chan struct{})
	sp.mu.Unlock()
	r.log.Info("region has storage space again: pushes are taken", "free_bytes", free)
}

// RunSpace watches the region's storage until ctx ends (every node runs
// it: each writes).
func (r *Region) RunSpace(ctx context.Context) error {
	t := time.NewTicker(spaceEvery)
	defer t.Stop()
	for {
		r.checkSpace(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
