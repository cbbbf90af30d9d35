package meta_test

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// TestUsageCountsASharedBlobOnceAndEveryLink: stored bytes count a blob
// once however many repositories link it, logical bytes count each link;
// a deleted manifest is not counted; the largest repositories come first.
func TestUsageCountsASharedBlobOnceAndEveryLink(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		v := hlc.Version{Time: 1, Region: "eastus"}
		shared, own := digest.FromString("shared layer"), digest.FromString("own layer")
		link := func(repo string, d digest.Digest, size int64) {
			t.Helper()
			if err := db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error { return tx.LinkBlob(ctx, repo, d, size, v, time.Now()) }); err != nil {
				t.Fatal(err)
			}
		}
		link("app/a", shared, 1000)
		link("app/b", shared, 1000)
		link("app/b", own, 300)
		for i, repo := range []string{"app/a", "app/b", "app/b"} {
			d := digest.FromString(string(rune('x' + i)))
			if err := db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
				if _, err := tx.PutManifest(ctx, &meta.Manifest{Repo: repo, Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 50, Payload: []byte("{}"), Created: time.Now(), Version: v}); err != nil {
					return err
				}
				_, err := tx.SetTag(ctx, repo, "t"+string(rune('0'+i)), d, v, time.Now())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if i == 2 { // deleted: not counted
				if err := db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
					_, err := tx.DeleteManifest(ctx, repo, d, hlc.Version{Time: 2, Region: "eastus"}, time.Now())
					return err
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
		u, err := db.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := meta.Usage{StoredBytes: 1300, LogicalBytes: 2300, Blobs: 2, Manifests: 2, ManifestBytes: 100, Repositories: 2}
		if u != want {
			t.Fatalf("usage %+v, want %+v", u, want)
		}
		top, err := db.TopRepositories(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(top) != 2 || top[0].Repository != "app/b" || top[0].LogicalBytes != 1300 || top[0].Blobs != 2 || top[0].Manifests != 1 || top[0].Tags != 1 ||
			top[1].Repository != "app/a" || top[1].LogicalBytes != 1000 {
			t.Fatalf("top repositories %+v", top)
		}
		if none, err := db.RepoUsage(ctx, "app/none"); err != nil || none != (meta.RepoUsage{Repository: "app/none"}) {
			t.Fatalf("a repository that holds nothing: %+v, %v", none, err)
		}
	})
}
