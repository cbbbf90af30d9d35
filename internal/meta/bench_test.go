package meta_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// BenchmarkAPushsWritesOnSQLite runs the metadata writes of a small push
// (link two blobs, store the manifest and its tag, with their feed
// records), one transaction each as the region does, on SQLite; and the
// read of the tag. go test -bench . -benchtime 2000x ./internal/meta
func BenchmarkAPushsWritesOnSQLite(b *testing.B) {
	db, err := meta.OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "meta.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := b.Context()
	i := 0
	for b.Loop() {
		i++
		repo := fmt.Sprintf("bench/r%d", i%50)
		v := hlc.Version{Time: int64(i), Region: "eastus"}
		for _, blob := range []string{"config", "layer"} {
			d := digest.FromString(fmt.Sprint(blob, i))
			if err := db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
				if err := tx.LinkBlob(ctx, repo, d, 100, v, time.Now()); err != nil {
					return err
				}
				return tx.AppendFeed(ctx, meta.Record{Kind: meta.KindBlob, Repo: repo, Digest: d, Size: 100, Version: v, Created: time.Now()})
			}); err != nil {
				b.Fatal(err)
			}
		}
		d := digest.FromString(fmt.Sprint("manifest", i))
		if err := db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
			if _, err := tx.PutManifest(ctx, &meta.Manifest{Repo: repo, Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 2, Payload: []byte("{}"), Created: time.Now(), Version: v}); err != nil {
				return err
			}
			if _, err := tx.SetTag(ctx, repo, "latest", d, v, time.Now()); err != nil {
				return err
			}
			return tx.AppendFeed(ctx, meta.Record{Kind: meta.KindManifest, Repo: repo, Digest: d, Tag: "latest", Version: v, Created: time.Now()})
		}); err != nil {
			b.Fatal(err)
		}
		if _, err := db.GetTag(ctx, repo, "latest"); err != nil {
			b.Fatal(err)
		}
	}
}
