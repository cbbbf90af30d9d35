package region_test

import (
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	contents3 "github.com/georeg/georeg/internal/content/s3"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/storetest"
)

// The region's tests run on the default stores (the filesystem and SQLite
// under the test's directory), and, with GEOREG_TEST_REGION_STORES=shared
// (make test runs them both ways), on the stores several nodes share: a
// fresh PostgreSQL database and S3 bucket per directory, the same ones
// when a test opens a directory again (a restart).

type sharedStores struct {
	dsn    string
	bucket storetest.S3
}

var (
	sharedMu  sync.Mutex
	sharedFor = map[string]sharedStores{}
)

// withStores returns cfg with its stores set for the run (see above).
func withStores(t *testing.T, cfg region.Config) region.Config {
	t.Helper()
	if os.Getenv("GEOREG_TEST_REGION_STORES") != "shared" {
		return cfg
	}
	sharedMu.Lock()
	st, ok := sharedFor[cfg.DataDir]
	sharedMu.Unlock()
	if !ok {
		st = sharedStores{dsn: storetest.Postgres(t), bucket: storetest.S3Bucket(t)}
		sharedMu.Lock()
		sharedFor[cfg.DataDir] = st
		sharedMu.Unlock()
	}
	cfg.Metadata = region.MetadataConfig{Driver: "postgres", DSN: st.dsn}
	cfg.Content = region.ContentConfig{Driver: "s3", S3: contents3.Config{Endpoint: st.bucket.Endpoint, Bucket: st.bucket.Bucket,
		AccessKey: st.bucket.AccessKey, SecretKey: st.bucket.SecretKey, PartSize: 5 << 20}}
	return cfg
}

// openRegion opens a region of cfg on the run's stores.
func openRegion(t *testing.T, cfg region.Config) *region.Region {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "eastus"
	}
	r, err := region.Open(t.Context(), withStores(t, cfg), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func open(t *testing.T, dir string, ttl time.Duration) *region.Region {
	t.Helper()
	return openRegion(t, region.Config{Name: "eastus", DataDir: dir, UploadTTL: ttl})
}
