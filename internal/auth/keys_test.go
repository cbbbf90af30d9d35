package auth

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/georeg/georeg/internal/region"
)

// TestKeysRotateAndRetire: a region signs with a key of its own whose
// private half is in no setting (so no peer is ever sent it); a rotation
// makes a new key sign at once while tokens of the old one still verify;
// once every token the old key signed has expired, the old key is retired
// (its public half tombstoned, its private half deleted) and its tokens
// are refused.
func TestKeysRotateAndRetire(t *testing.T) {
	ctx := context.Background()
	r := openRegion(t, "eastus")
	now := time.Now()
	s := New(Config{Enabled: true}, r, slog.New(slog.DiscardHandler))
	s.now = func() time.Time { return now }
	if err := s.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	noPrivateKeys := func() {
		all, err := r.AllSettings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range all {
			if strings.Contains(string(st.Value), "PRIVATE KEY") {
				t.Fatalf("setting %s/%s carries a private key", st.Kind, st.Name)
			}
		}
	}
	noPrivateKeys()
	admin := &Principal{Name: "admin", Kind: KindUser, Admin: true}
	kidOf := func(raw string) string {
		tok, _, err := jwt.NewParser().ParseUnverified(raw, &Claims{})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Header["kid"].(string)
	}
	old, _, err := s.Issue(ctx, admin, nil, true) // a refresh token: 24 h
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	noPrivateKeys()
	if early, _, err := s.Issue(ctx, admin, nil, false); err != nil || kidOf(early) != kidOf(old) {
		t.Fatalf("a token right after rotation is signed by %s (%v), want the old key until the new one is published", kidOf(early), err)
	}
	now = now.Add(keyPublished + time.Second)
	s.forgetKeys()
	fresh, _, err := s.Issue(ctx, admin, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(fresh) == kidOf(old) {
		t.Fatal("the rotated key does not sign")
	}
	if _, err := s.Verify(ctx, old); err != nil {
		t.Fatalf("a token of the old key right after rotation: %v", err)
	}
	keys, err := s.Keys(ctx)
	if err != nil || len(keys) != 2 || keys[0].State != "signing" || keys[1].State != "verifying" || keys[1].Retires == nil {
		t.Fatalf("keys after rotation: %+v %v", keys, err)
	}
	// Before the retirement time nothing is retired; after it, the old
	// key goes, and a token it signed (were it still unexpired) with it.
	now = now.Add(s.retireAfter() - time.Minute)
	if err := s.maintainKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if locals, _ := r.LocalKeys(ctx); len(locals) != 2 {
		t.Fatalf("%d local keys before the retirement time", len(locals))
	}
	now = now.Add(2 * time.Minute)
	if err := s.maintainKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if locals, _ := r.LocalKeys(ctx); len(locals) != 1 || locals[0].Kid != kidOf(fresh) {
		t.Fatalf("local keys after the retirement time: %+v", locals)
	}
	s.now = func() time.Time { return time.Now() } // the old token is unexpired again: only its key can refuse it
	if _, err := s.Verify(ctx, old); err == nil || !strings.Contains(err.Error(), "does not have") {
		t.Fatalf("a token of a retired key: %v", err)
	}
	if _, err := s.Verify(ctx, fresh); err != nil {
		t.Fatalf("a token of the signing key: %v", err)
	}
}

// TestARotationAskedElsewhereIsFollowed: a rotation requested (the
// replicated setting, as another region writes it) makes this region a
// new key at its next maintenance, once.
func TestARotationAskedElsewhereIsFollowed(t *testing.T) {
	ctx := context.Background()
	r := openRegion(t, "westeurope")
	s := New(Config{Enabled: true}, r, slog.New(slog.DiscardHandler))
	if err := s.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := r.PutSetting(ctx, KindRegistry, SettingKeyRotation, []byte(`{"requested":"`+time.Now().UTC().Format(time.RFC3339Nano)+`"}`)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.maintainKeys(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if locals, _ := r.LocalKeys(ctx); len(locals) != 2 {
		t.Fatalf("%d local keys after one rotation, want 2", len(locals))
	}
}

// TestNodesOfARegionMakeOneKey: two nodes of one region (two services
// over one store) starting at once make one signing key between them,
// and both sign with it.
func TestNodesOfARegionMakeOneKey(t *testing.T) {
	ctx := context.Background()
	r := openRegion(t, "eastus")
	nodes := []*Service{New(Config{Enabled: true}, r, slog.New(slog.DiscardHandler)), New(Config{Enabled: true}, r, slog.New(slog.DiscardHandler))}
	errs := make(chan error, 2)
	for _, s := range nodes {
		go func() { errs <- s.Bootstrap(ctx) }()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if locals, _ := r.LocalKeys(ctx); len(locals) != 1 {
		t.Fatalf("%d keys made by two nodes starting at once", len(locals))
	}
	admin := &Principal{Name: "admin", Kind: KindUser, Admin: true}
	var kids []string
	for _, s := range nodes {
		raw, _, err := s.Issue(ctx, admin, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, _ := jwt.NewParser().ParseUnverified(raw, &Claims{})
		kids = append(kids, tok.Header["kid"].(string))
	}
	if kids[0] != kids[1] {
		t.Fatalf("the nodes sign with %v", kids)
	}
}

// openRegion opens a region of one node on a fresh data directory, closed
// when t ends.
func openRegion(t *testing.T, name string) *region.Region {
	t.Helper()
	r, err := region.Open(t.Context(), region.Config{Name: name, DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestATokenOfAKeyOnItsWayIsVerifiedWhenTheKeyArrives: a region's first
// key signs at once, and its public half reaches the other regions by
// replication a moment later; a token it issued in that moment, presented
// to another region, waits for the key (a bounded wait) and verifies,
// while a token whose key never arrives (another registry's) is refused,
// after one wait and again.
func TestATokenOfAKeyOnItsWayIsVerifiedWhenTheKeyArrives(t *testing.T) {
	ctx := context.Background()
	admin := &Principal{Name: "admin", Kind: KindUser, Admin: true}
	var services []*Service
	var tokens []string
	regions := []*region.Region{openRegion(t, "eastus"), openRegion(t, "westeurope"), openRegion(t, "elsewhere")}
	for _, r := range regions {
		s := New(Config{Enabled: true}, r, slog.New(slog.DiscardHandler))
		if err := s.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		tok, _, err := s.Issue(ctx, admin, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		services, tokens = append(services, s), append(tokens, tok)
	}
	east, west, verifier := regions[0], regions[1], services[1]
	keys, err := east.Settings(ctx, KindSigningKey)
	if err != nil || len(keys) != 1 {
		t.Fatalf("eastus's keys: %v %v", keys, err)
	}
	// eastus's key arrives (as replication writes it) while its token
	// waits.
	arrived := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, err := west.PutSetting(ctx, KindSigningKey, keys[0].Name, keys[0].Value)
		arrived <- err
	}()
	if _, err := verifier.Verify(ctx, tokens[0]); err != nil {
		t.Fatalf("a token whose key arrived while it waited: %v", err)
	}
	if err := <-arrived; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := verifier.Verify(ctx, tokens[2]); err == nil || !strings.Contains(err.Error(), "does not have") {
			t.Fatalf("a token of a key that never arrives: %v", err)
		}
	}
}
