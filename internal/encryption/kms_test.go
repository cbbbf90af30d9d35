package encryption_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/content/crypt"
	"github.com/georeg/georeg/internal/encryption"
	"github.com/georeg/georeg/internal/encryption/kmstest"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// TestAKMSPluginWrapsDataKeys: the kms provider against the real plugin
// (cmd/georeg-kms-pkcs11 over a SoftHSM2 token). A data key wraps and
// unwraps; the wrapped form holds no byte run of the key; the plugin's
// key rotated (restarted with a new label), new wraps name the new key
// and the old wrap still unwraps; the plugin killed, every call fails
// within the configured timeout, a keyring's Check (even one holding its
// data key) names the key and is an OCI UNAVAILABLE; the plugin back, the same client works again.
func TestAKMSPluginWrapsDataKeys(t *testing.T) {
	p := kmstest.Start(t, "kek-1")
	ks, err := encryption.Config{Provider: "kms", KMSSocket: p.Socket, KMSTimeout: time.Second}.Open()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if id, err := ks.Status(ctx); err != nil || id != "kek-1" {
		t.Fatalf("status: %q, %v", id, err)
	}
	dk := bytes.Repeat([]byte{0x5a, 0xa5, 0x3c, 0xc3}, 8)
	wrapped, kek, err := ks.Encrypt(ctx, dk)
	if err != nil || kek != "kek-1" {
		t.Fatalf("encrypt: %q, %v", kek, err)
	}
	if bytes.Contains(wrapped, dk[:8]) {
		t.Fatal("the wrapped key holds the key")
	}
	if got, err := ks.Decrypt(ctx, wrapped, kek); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("decrypt: %v", err)
	}
	if _, err := ks.Decrypt(ctx, wrapped, "kek-9"); err == nil {
		t.Fatal("a wrap unwrapped under another key id")
	}

	p.Restart("kek-2")
	if id, err := ks.Status(ctx); err != nil || id != "kek-2" {
		t.Fatalf("status after rotation: %q, %v", id, err)
	}
	if _, kek2, err := ks.Encrypt(ctx, dk); err != nil || kek2 != "kek-2" {
		t.Fatalf("encrypt after rotation: %q, %v", kek2, err)
	}
	if got, err := ks.Decrypt(ctx, wrapped, "kek-1"); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("the old wrap after rotation: %v", err)
	}

	db, err := meta.OpenSQLite(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ring := encryption.NewKeyring(db, ks, time.Minute)
	id, key, err := ring.Current(ctx)
	if err != nil || len(key) != 32 {
		t.Fatalf("the keyring's first key: %v", err)
	}
	if err := ring.Check(ctx); err != nil {
		t.Fatalf("check with the plugin up: %v", err)
	}

	p.Stop()
	start := time.Now()
	_, err = ks.Status(ctx)
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("status with the plugin killed: %v after %s", err, time.Since(start))
	}
	if _, err := ks.Decrypt(ctx, wrapped, "kek-1"); err == nil {
		t.Fatal("decrypt with the plugin killed")
	}
	// The keyring that holds the current data key unwrapped is not ready
	// either once its next status check finds the plugin gone (5 s).
	waitUntil(t, 10*time.Second, func() error {
		if err := ring.Check(ctx); !errors.Is(err, crypt.ErrKeyUnavailable) {
			return fmt.Errorf("check of a keyring holding its key, the plugin killed: %v", err)
		}
		return nil
	})
	fresh := encryption.NewKeyring(db, ks, time.Minute) // nothing cached
	err = fresh.Check(ctx)
	if !errors.Is(err, crypt.ErrKeyUnavailable) || !strings.Contains(err.Error(), "KMS plugin at "+p.Socket) {
		t.Fatalf("check with the plugin killed: %v", err)
	}
	var oe *ocierr.Error
	if !errors.As(err, &oe) || oe.Code.Status != 503 {
		t.Fatalf("check with the plugin killed is not a 503: %v", err)
	}
	if _, err := fresh.Key(ctx, id); !errors.Is(err, crypt.ErrKeyUnavailable) {
		t.Fatalf("a data key with the plugin killed: %v", err)
	}

	p.Restart("kek-2")
	waitUntil(t, 15*time.Second, func() error { _, err := ks.Status(ctx); return err })
	if got, err := fresh.Key(ctx, id); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("the data key with the plugin back: %v", err)
	}
}

// TestKMSStatusIsJudged: what a plugin's Status answer means.
func TestKMSStatusIsJudged(t *testing.T) {
	for _, c := range []struct {
		version, healthz, key string
		ok                    bool
	}{
		{"v2", "ok", "k1", true},
		{"v2beta1", "ok", "k1", true},
		{"v1", "ok", "k1", false},
		{"v2", "token not present", "k1", false},
		{"v2", "ok", "", false},
	} {
		_, err := encryption.CheckStatus("p", c.version, c.healthz, c.key)
		if (err == nil) != c.ok {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func waitUntil(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("after %s: %v", d, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
