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
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
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
