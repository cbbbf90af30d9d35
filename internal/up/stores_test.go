package up_test

import (
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for openStore
	_ "modernc.org/sqlite"             // the "sqlite" driver, for openStore

	contents3 "github.com/georeg/georeg/internal/content/s3"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/storetest"
	"github.com/georeg/georeg/internal/up"
)

// The registry tests run every region on the filesystem and SQLite under
// the test's directory, and, with GEOREG_TEST_REGION_STORES=shared (make
// test runs them both ways), each region on a PostgreSQL database and an
// S3 bucket of its own: regions on the stores several nodes share
// replicate as the SQLite ones do.

var dsns sync.Map // dataDir/region -> PostgreSQL DSN, for openStore

var buckets sync.Map // dataDir/region -> its S3 bucket's configuration, for storedObjects

func shared() bool { return os.Getenv("GEOREG_TEST_REGION_STORES") == "shared" }

// withStores sets cfg.Stores for the run.
func withStores(t *testing.T, cfg *up.Config) {
	t.Helper()
	if !shared() || cfg.Stores != nil {
		return
	}
	dir := cfg.DataDir
	cfg.Stores = func(name string) (region.ContentConfig, region.MetadataConfig) {
		dsn := storetest.Postgres(t)
		bucket := storetest.S3Bucket(t)
		dsns.Store(filepath.Join(dir, name), dsn)
		s3 := contents3.Config{Endpoint: bucket.Endpoint, Bucket: bucket.Bucket,
			AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey, PartSize: 5 << 20}
		buckets.Store(filepath.Join(dir, name), s3)
		return region.ContentConfig{Driver: "s3", S3: s3}, region.MetadataConfig{Driver: "postgres", DSN: dsn}
	}
}

// openStore opens a running region's metadata database directly, as an
// operator (or a bug) could, to damage it behind the region's back.
func openStore(t *testing.T, dataDir, name string) *sql.DB {
	t.Helper()
	driver, dsn := "sqlite", "file:"+filepath.Join(dataDir, name, "meta.db")+"?_pragma=busy_timeout(10000)"
	if v, ok := dsns.Load(filepath.Join(dataDir, name)); ok {
		driver, dsn = "pgx", v.(string)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// storedObjects returns every object a running region's content store
// holds, as stored (ciphertext, when it encrypts): the files under its
// content directory, or the objects in its bucket.
func storedObjects(t *testing.T, dataDir, name string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if v, ok := buckets.Load(filepath.Join(dataDir, name)); ok {
		b, err := contents3.Open(t.Context(), v.(contents3.Config))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		var keys []string
		if err := b.Walk(t.Context(), "", func(key string, _ int64, _ time.Time) error {
			keys = append(keys, key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			r, err := b.Reader(t.Context(), k, 0)
			if err != nil {
				continue // staging data S3 cannot read back
			}
			data, _ := io.ReadAll(r)
			r.Close()
			out[k] = data
		}
		return out
	}
	root := filepath.Join(dataDir, name, "content")
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		out[p] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
