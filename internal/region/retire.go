package region

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/georeg/georeg/internal/content"
	contentfs "github.com/georeg/georeg/internal/content/fs"
	"github.com/georeg/georeg/internal/meta"
)

// A retired region was deleted from its registry with --purge: it keeps no
// data and replicates with nobody, even after a restart, on every node.
// The flag is a row of the metadata store (region_state "retired") that
// Purge leaves, set before anything is deleted, so a crash midway leaves a
// retired region that finishes purging when asked again.
const retiredFlag = "retired"

// Retired reports whether this region was retired.
func (r *Region) Retired() bool {
	if r.retired.Load() {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, ok, err := r.db.RegionState(ctx, retiredFlag)
	if err == nil && ok && v == 1 {
		r.retired.Store(true)
		return true
	}
	return false
}

// Retire marks this region retired (durably, first) and deletes its data:
// every metadata row and every blob and upload in the content store.
func (r *Region) Retire(ctx context.Context) error {
	if err := r.db.Update(ctx, func(tx *meta.Tx) error { return tx.SetRegionState(ctx, retiredFlag, 1) }); err != nil {
		return fmt.Errorf("mark retired: %w", err)
	}
	r.retired.Store(true)
	if err := r.db.Update(ctx, func(tx *meta.Tx) error { return tx.Purge(ctx) }); err != nil {
		return err
	}
	r.cache.invalidateAll()
	if err := r.purgeContent(ctx); err != nil {
		return fmt.Errorf("purge content: %w", err)
	}
	r.log.WarnContext(ctx, "region retired: its data is deleted and it replicates with nobody")
	return nil
}

// purgeContent deletes every blob and upload: on a filesystem by removing
// the directories, elsewhere object by object.
func (r *Region) purgeContent(ctx context.Context) error {
	b := r.store.Backend()
	if fsb, ok := b.(*contentfs.Backend); ok {
		for _, dir := range []string{"blobs", "uploads"} {
			if err := os.RemoveAll(filepath.Join(fsb.Root(), dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	for _, prefix := range []string{"blobs/", "uploads/"} {
		var keys []string
		if err := b.Walk(ctx, prefix, func(key string, _ int64, _ time.Time) error {
			keys = append(keys, key)
			return nil
		}); err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Delete(ctx, k); err != nil && !errors.Is(err, content.ErrNotFound) {
				return err
			}
		}
	}
	if sw, ok := b.(content.Sweeper); ok {
		return sw.Sweep(ctx, time.Now().Add(time.Hour))
	}
	return nil
}
