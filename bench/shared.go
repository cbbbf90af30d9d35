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
	"os/exec"
	"path/filepath"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// benchShared measures one node of a region on the stores several nodes
// share: PostgreSQL and an S3 bucket on the servers scripts/services runs
// on this machine (make bench starts them). The same figures as the
// default node's, so the cost of sharing shows: every write transaction
// takes the region's advisory lock and commits in PostgreSQL, every blob
// goes to the S3 server (which writes it to this machine's disk again),
// and a node caches no tags.
func benchShared(ctx context.Context, bin, dir, logLevel string, gib int64) ([]row, error) {
	dsn, err := newDatabase(ctx)
	if err != nil {
		return nil, err
	}
	endpoint, bucket, access, secret, err := newBucket(ctx)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "shared")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	addr := freeAddr()
	cfg := fmt.Sprintf(`region:
  name: bench
  node: bench-1
  dataDir: %s
  metadata: {driver: postgres, dsn: %q}
  content:
    driver: s3
    s3: {endpoint: %s, bucket: %s, accessKey: %s, secretKey: %s}
http:
  listen: %s
log:
  level: %s
`, data, dsn, endpoint, bucket, access, secret, addr, logLevel)
	file := filepath.Join(dir, "shared.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(data + ".log")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", file)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, addr: addr, base: "http://" + addr}
	defer s.stop()
	if err := waitReady(s.base, 30*time.Second); err != nil {
		return nil, fmt.Errorf("georeg serve on PostgreSQL and S3: %w", err)
	}
	var rows []row
	for _, step := range []func(context.Context, *server, int64) ([]row, error){benchUpload, benchDownload, benchManifestGets, benchSmallPushes} {
		rs, err := step(ctx, s, gib)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			r.name = "PostgreSQL + S3: " + r.name
			r.note = "no target for shared stores; the default node's is " + r.target
			r.target = ""
			rows = append(rows, r)
		}
	}
	return rows, nil
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
	return u.String(), nil
}

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
