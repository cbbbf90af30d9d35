// Package storetest gives tests the real servers `make test` starts
// (scripts/services): a fresh PostgreSQL database or S3 bucket per test,
// dropped when the test ends. A test that needs one and finds none fails,
// naming what to run; it never skips.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Postgres returns the DSN of a new, empty database on the server
// GEOREG_TEST_POSTGRES names; it is dropped when t ends.
func Postgres(t testing.TB) string {
	t.Helper()
	base := os.Getenv("GEOREG_TEST_POSTGRES")
	if base == "" {
		t.Fatal("GEOREG_TEST_POSTGRES is not set: run the tests with make test, which starts PostgreSQL (scripts/services start writes .tools/run/env)")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("GEOREG_TEST_POSTGRES: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := "georeg_" + random()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s on %s: %v (is PostgreSQL running? make test starts it)", name, base, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("GEOREG_TEST_POSTGRES is not a URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func random() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// S3 is where a test's bucket is.
type S3 struct {
	Endpoint, Bucket, AccessKey, SecretKey string
}

// S3Bucket returns a new, empty bucket on the S3 server GEOREG_TEST_S3
// names; it is emptied and removed when t ends.
func S3Bucket(t testing.TB) S3 {
	t.Helper()
	s := S3{Endpoint: os.Getenv("GEOREG_TEST_S3"), AccessKey: os.Getenv("GEOREG_TEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("GEOREG_TEST_S3_SECRET_KEY"), Bucket: "georeg-" + random()}
	if s.Endpoint == "" {
		t.Fatal("GEOREG_TEST_S3 is not set: run the tests with make test, which starts an S3 server (scripts/services start writes .tools/run/env)")
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatalf("GEOREG_TEST_S3: %v", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure: u.Scheme == "https", BucketLookup: minio.BucketLookupPath, Transport: tr})
	if err != nil {
		t.Fatalf("GEOREG_TEST_S3: %v", err)
	}
	t.Cleanup(tr.CloseIdleConnections) // runs last: after the bucket is removed
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket %s at %s: %v (is the S3 server running? make test starts it)", s.Bucket, s.Endpoint, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for up := range c.ListIncompleteUploads(ctx, s.Bucket, "", true) {
			if up.Err == nil {
				_ = c.RemoveIncompleteUpload(ctx, s.Bucket, up.Key)
			}
		}
		for o := range c.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err == nil {
				_ = c.RemoveObject(ctx, s.Bucket, o.Key, minio.RemoveObjectOptions{})
			}
		}
		if err := c.RemoveBucket(ctx, s.Bucket); err != nil {
			t.Errorf("remove bucket %s: %v", s.Bucket, err)
		}
	})
	return s
}
