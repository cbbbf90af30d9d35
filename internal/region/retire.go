package region

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/georeg/georeg/internal/meta"
)

// retiredMarker is the file whose presence says this region was deleted
// from its registry with --purge: it keeps no data and replicates with
// nobody, even after a restart.
const retiredMarker = "retired"

// Retired reports whether this region was retired.
func (r *Region) Retired() bool {
	_, err := os.Stat(filepath.Join(r.cfg.DataDir, retiredMarker))
	return err == nil
}

// Retire marks this region retired (durably, first: a crash midway leaves
// a retired region that finishes purging on the next call) and deletes its
// data: every metadata row and every blob and upload in the content store.
func (r *Region) Retire(ctx context.Context) error {
	marker := filepath.Join(r.cfg.DataDir, retiredMarker)
	if err := os.WriteFile(marker, []byte("deleted from its registry with --purge\n"), 0o644); err != nil {
		return fmt.Errorf("mark retired: %w", err)
	}
	if err := syncDir(r.cfg.DataDir); err != nil {
		return err
	}
	if err := r.db.Update(ctx, func(tx *meta.Tx) error { return tx.Purge(ctx) }); err != nil {
		return err
	}
	r.cache.invalidateAll()
	for _, dir := range []string{"blobs", "uploads"} {
		if err := os.RemoveAll(filepath.Join(r.cfg.DataDir, "content", dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("purge content: %w", err)
		}
	}
	r.log.WarnContext(ctx, "region retired: its data is deleted and it replicates with nobody")
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
