package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/georeg/georeg/internal/link"
)

// benchShared measures one node of a region on the stores several nodes
// share: PostgreSQL and an S3 bucket on the servers scripts/services runs
// on this machine (make bench-shared starts them), beside a node on the
// local filesystem and SQLite in the same run, with the same steps, so the
// cost of sharing shows as a ratio.
// With pushesOnly, it measures the small pushes alone (for comparing
// builds on that one figure).
func benchShared(ctx context.Context, bin, dir, logLevel string, gib int64, pushesOnly bool) ([]row, error) {
	stores, err := newSharedStores(ctx)
	if err != nil {
		return nil, err
	}
	shared := contender{"PostgreSQL + S3", func(ctx context.Context, data string) (*server, error) {
		return startSharedNode(ctx, bin, data, logLevel, stores, "bench-1")
	}}
	fs := contender{"fs node", func(ctx context.Context, data string) (*server, error) {
		return startServer(ctx, bin, data, logLevel)
	}}
	steps := []step{benchUpload, benchDownload, benchManifestGets}
	all := []contender{shared, fs}
	results := make([][]figure, len(all))
	for i, c := range all {
		if pushesOnly {
			break
		}
		figs, err := measure(ctx, c, filepath.Join(dir, fmt.Sprintf("shared-%d", i)), gib, steps)
		if err != nil {
			return nil, err
		}
		results[i] = figs
	}
	// Small pushes interleaved, round by round, as in the node part: the
	// ratio of two figures taken minutes apart measured the machine.
	pushes, err := interleavedPushes(ctx, all, dir, sharedPushesTarget, "the fs node")
	if err != nil {
		return nil, err
	}
	for i := range all {
		results[i] = append(results[i], pushes[i])
	}
	var at16, at64 float64
	for i := range results[0] {
		f := &results[0][i]
		f.target, f.ratioTarget = 0, 0
		switch f.name {
		case "manifest GET by tag, 16 clients":
			f.ratioTarget, at16 = 0.8, f.value
		case "manifest GET by tag, 64 clients":
			f.ratioTarget, at64 = 0.8, f.value
		case smallPushesName:
			f.ratioTarget = sharedPushesTarget
		}
	}
	rows := compare(all, results, "the fs node")
	for i := range rows {
		rows[i].name = "PostgreSQL + S3: " + rows[i].name
	}
	if pushesOnly {
		return rows, nil
	}
	rows = append(rows, row{"PostgreSQL + S3: manifest GETs, 64 clients / 16 clients", fmt.Sprintf("%.2fx", at64/at16), ">= 1.0x", distance(at64/at16, 1, true)})
	return rows, nil
}

// sharedPushesTarget is issue 22's target for a node on PostgreSQL and
// S3: 100 small pushes in at most this many times the fs node's time.
const sharedPushesTarget = 1.5

// sharedStores are a database and a bucket every node of a benchmarked
// region shares.
type sharedStores struct {
	dsn                              string
	endpoint, bucket, access, secret string
}

func newSharedStores(ctx context.Context) (sharedStores, error) {
	dsn, err := newDatabase(ctx)
	if err != nil {
		return sharedStores{}, err
	}
	endpoint, bucket, access, secret, err := newBucket(ctx)
	if err != nil {
		return sharedStores{}, err
	}
	return sharedStores{dsn, endpoint, bucket, access, secret}, nil
}

// startSharedNode runs `georeg serve` as node of region bench on stores,
// with its own data directory (for what a node keeps locally).
func startSharedNode(ctx context.Context, bin, data, logLevel string, stores sharedStores, node string) (*server, error) {
	return startSharedRegionNode(ctx, bin, data, logLevel, stores, node, freeAddr(), "")
}

// startSharedRegionNode is startSharedNode listening on addr, with more
// configuration (extra: a replication section, say).
func startSharedRegionNode(ctx context.Context, bin, data, logLevel string, stores sharedStores, node, addr, extra string) (*server, error) {
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`region:
  name: bench
  node: %s
  dataDir: %s
  metadata: {driver: postgres, dsn: %q, writeLanes: %d}
  content:
    driver: s3
    s3: {endpoint: %s, bucket: %s, accessKey: %s, secretKey: %s}
http:
  listen: %s
log:
  level: %s
`, node, data, stores.dsn, writeLanes, stores.endpoint, stores.bucket, stores.access, stores.secret, addr, logLevel) + extra
	file := data + ".yaml"
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc(ctx, bin, data+".log", addr, "serve", "--config", file)
	if err != nil {
		return nil, fmt.Errorf("on PostgreSQL and S3: %w", err)
	}
	return p.server(), nil
}

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newDatabase creates a database on GEOREG_TEST_POSTGRES's server.
func newDatabase(ctx context.Context) (string, error) {
	base := os.Getenv("GEOREG_TEST_POSTGRES")
	if base == "" {
		return "", errors.New("GEOREG_TEST_POSTGRES is not set: make bench starts PostgreSQL (scripts/services start writes .tools/run/env)")
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", err
	}
	defer db.Close()
	name := "georeg_bench_" + randomName()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	if pgRTT > 0 {
		// PostgreSQL on another host: its connections go through a link
		// of that round trip (and no bandwidth limit).
		p, err := link.Start(ctx, u.Host, link.Shape{Latency: pgRTT / 2})
		if err != nil {
			return "", err
		}
		u.Host = p.Addr()
		if err := printRoundTrip(ctx, u.String()); err != nil {
			return "", err
		}
	}
	return u.String(), nil
}

// printRoundTrip measures what a query costs on dsn's server (200 `SELECT
// 1` on one connection) and prints it: the round trip the link gives.
func printRoundTrip(ctx context.Context, dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	t0 := time.Now()
	for range 200 {
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "  PostgreSQL through the simulated link: SELECT 1 takes %s\n", (time.Since(t0) / 200).Round(time.Microsecond))
	return nil
}

// writeLanes is the shared nodes' metadata.writeLanes (-write-lanes; 0:
// the default).
var writeLanes int

// pgRTT is the round trip to PostgreSQL the shared parts simulate
// (-pg-rtt; 0: the local server's own). The link's timers make any
// latency above zero cost at least about 1.5 ms a round trip; 1ns gives
// the proxy's own hop, about 0.3 ms: printRoundTrip says what it was.
var pgRTT time.Duration

// newBucket creates a bucket on GEOREG_TEST_S3's server.
func newBucket(ctx context.Context) (endpoint, bucket, access, secret string, err error) {
	endpoint, access, secret = os.Getenv("GEOREG_TEST_S3"), os.Getenv("GEOREG_TEST_S3_ACCESS_KEY"), os.Getenv("GEOREG_TEST_S3_SECRET_KEY")
	if endpoint == "" {
		return "", "", "", "", errors.New("GEOREG_TEST_S3 is not set: make bench starts an S3 server (scripts/services start writes .tools/run/env)")
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", "", "", "", err
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return "", "", "", "", err
	}
	bucket = "georeg-bench-" + randomName()
	return endpoint, bucket, access, secret, c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
}
