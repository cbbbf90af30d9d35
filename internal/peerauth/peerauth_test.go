package peerauth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// TestATokenIsGoodAtOneRegionForMinutes: a region token names who minted
// it and for whom; it is refused at any other region, after it expires,
// when it expires too far ahead, under another secret, and when any part
// of it is changed.
func TestATokenIsGoodAtOneRegionForMinutes(t *testing.T) {
	k := FromSecret("s3cr3t")
	tok := k.Token("eastus", "westeurope", t0)
	if from, err := k.Verify(tok, "westeurope", t0); err != nil || from != "eastus" {
		t.Fatalf("own token: %q %v", from, err)
	}
	if _, err := k.Verify(tok, "westeurope", t0.Add(TokenTTL-time.Second)); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	cases := map[string]struct {
		token, self string
		at          time.Time
		want        error
	}{
		"at another region":    {tok, "southeastasia", t0, ErrAudience},
		"expired":              {tok, "westeurope", t0.Add(TokenTTL), ErrExpired},
		"minted far ahead":     {k.Token("eastus", "westeurope", t0.Add(TokenTTL)), "westeurope", t0, ErrTooLong},
		"another secret's":     {FromSecret("other").Token("eastus", "westeurope", t0), "westeurope", t0, ErrSignature},
		"its minter changed":   {strings.Replace(tok, "eastus", "brazilsouth", 1), "westeurope", t0, ErrSignature},
		"its audience changed": {strings.Replace(tok, ".westeurope.", ".southeastasia.", 1), "southeastasia", t0, ErrSignature},
		"its expiry extended":  {extend(tok), "westeurope", t0, ErrSignature},
		"the secret itself":    {"s3cr3t", "westeurope", t0, ErrMalformed},
		"the prefix only":      {peerPrefix, "westeurope", t0, ErrMalformed},
		"a probe token":        {k.ProbeToken(t0), "westeurope", t0, ErrMalformed},
		"a name no region has": {k.Token("data.eastus", "westeurope", t0), "westeurope", t0, ErrMalformed},
	}
	for name, c := range cases {
		if _, err := k.Verify(c.token, c.self, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, err := FromSecret("").Verify(tok, "westeurope", t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("a region without a secret accepts a token: %v", err)
	}
}

// extend moves a token's expiry an hour later, keeping its MAC.
func extend(tok string) string {
	parts := strings.Split(tok, ".")
	parts[3] = "9" + parts[3]
	return strings.Join(parts, ".")
}

// TestTheDoorsKeyOnlyProbes: the probe key, all the front door holds,
// mints probe tokens and nothing a region accepts as a region's; it is
// not any region key.
func TestTheDoorsKeyOnlyProbes(t *testing.T) {
	k := FromSecret("s3cr3t")
	door, err := ProbeOnly(ProbeKey("s3cr3t"))
	if err != nil {
		t.Fatal(err)
	}
	if door.CanSign() {
		t.Fatal("the door's keys sign region tokens")
	}
	if err := k.VerifyProbe(door.ProbeToken(t0), t0); err != nil {
		t.Fatalf("the door's probe token: %v", err)
	}
	if err := k.VerifyProbe(door.ProbeToken(t0), t0.Add(TokenTTL)); !errors.Is(err, ErrExpired) {
		t.Fatalf("an expired probe token: %v", err)
	}
	if err := k.VerifyProbe(FromSecret("other").ProbeToken(t0), t0); !errors.Is(err, ErrSignature) {
		t.Fatalf("another registry's probe token: %v", err)
	}
	for _, key := range [][]byte{k.peer, k.identity, Derive("s3cr3t", "data-endpoint:eastus")} {
		if strings.Contains(ProbeKey("s3cr3t"), hex.EncodeToString(key)) {
			t.Fatal("the probe key is another key")
		}
	}
	if _, err := ProbeOnly("s3cr3t"); err == nil {
		t.Fatal("a probe key that is not 64 hex digits is accepted")
	}
}

// region is a test region: its identity endpoint and an endpoint that
// records the Authorization header of every request.
type region struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newRegion(t *testing.T, name, secret string) *region {
	v := NewVerifier(FromSecret(secret), name, slog.New(slog.DiscardHandler))
	r := &region{}
	mux := http.NewServeMux()
	mux.Handle(IdentityPath, v.IdentityHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Header.Get("Authorization"))
		r.mu.Unlock()
	})
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *region) authorizations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// TestNoCredentialGoesToAnEndpointThatCannotProveItsRegion: a request to
// a peer carries a token only once its endpoint proved, with a fresh
// nonce, that it is the region named; a rogue endpoint (no secret, or
// another region's name, or a replayed proof) gets none.
func TestNoCredentialGoesToAnEndpointThatCannotProveItsRegion(t *testing.T) {
	west := newRegion(t, "westeurope", "s3cr3t")
	s := NewSigner(FromSecret("s3cr3t"), "eastus", http.DefaultClient)
	call := func(base, to string) error {
		req, _ := http.NewRequest(http.MethodGet, base+"/feed", nil)
		if err := s.Authorize(context.Background(), req, to); err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := call(west.srv.URL, "westeurope"); err != nil {
		t.Fatal(err)
	}
	got := west.authorizations()
	if len(got) != 1 {
		t.Fatalf("westeurope saw %d requests", len(got))
	}
	if from, err := FromSecret("s3cr3t").Verify(strings.TrimPrefix(got[0], "Bearer "), "westeurope", time.Now()); err != nil || from != "eastus" {
		t.Fatalf("westeurope got %q: %v", got[0], err)
	}

	// A rogue endpoint: another secret, a region registered under another
	// name, a server that replays a proof it got from the real region,
	// and one that answers nothing useful.
	rogue := newRegion(t, "brazilsouth", "guessed")
	if err := call(rogue.srv.URL, "brazilsouth"); !errors.Is(err, ErrUnproven) {
		t.Fatalf("another secret's endpoint: %v", err)
	}
	if err := call(west.srv.URL, "southeastasia"); !errors.Is(err, ErrUnproven) {
		t.Fatalf("westeurope's endpoint registered as southeastasia: %v", err)
	}
	var replay Identity
	resp, err := http.Get(west.srv.URL + IdentityPath + "?from=eastus&nonce=0123456789abcdef0123")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&replay)
	resp.Body.Close()
	var replays []string
	replayer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		replays = append(replays, req.Header.Get("Authorization"))
		_ = json.NewEncoder(w).Encode(replay)
	}))
	defer replayer.Close()
	if err := call(replayer.URL, "westeurope"); !errors.Is(err, ErrUnproven) {
		t.Fatalf("a replayed proof: %v", err)
	}
	mute := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		replays = append(replays, req.Header.Get("Authorization"))
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer mute.Close()
	if err := call(mute.URL, "westeurope"); !errors.Is(err, ErrUnproven) {
		t.Fatalf("an endpoint without identity: %v", err)
	}
	for _, a := range append(append(rogue.authorizations(), replays...), west.authorizations()[1:]...) {
		if a != "" {
			t.Fatalf("a rogue endpoint got a credential: %q", a)
		}
	}
}

// TestTokensAreRenewedBeforeTheyExpire: a signer reuses a token for half
// its life, then mints a new one, so a peer never receives an expired
// one.
func TestTokensAreRenewedBeforeTheyExpire(t *testing.T) {
	now := t0
	s := NewSigner(FromSecret("s3cr3t"), "eastus", http.DefaultClient).WithClock(func() time.Time { return now })
	first := s.Token("westeurope")
	now = now.Add(TokenTTL/2 - time.Second)
	if s.Token("westeurope") != first {
		t.Fatal("renewed before half its life")
	}
	now = now.Add(time.Second)
	second := s.Token("westeurope")
	if second == first {
		t.Fatal("not renewed at half its life")
	}
	if _, err := FromSecret("s3cr3t").Verify(second, "westeurope", now.Add(TokenTTL/2)); err != nil {
		t.Fatalf("the renewed token half a life later: %v", err)
	}
}

// TestOnlyMembersTokensAreAccepted: a valid token of a region that is not
// (or no longer) a member is refused, except to register itself; the
// region's own nodes and the door's probes are accepted as documented.
func TestOnlyMembersTokensAreAccepted(t *testing.T) {
	k := FromSecret("s3cr3t")
	members := map[string]bool{"westeurope": true}
	v := NewVerifier(k, "eastus", slog.New(slog.DiscardHandler)).WithClock(func() time.Time { return t0 })
	v.SetMembership(func(_ context.Context, name string) bool { return members[name] })
	req := func(method, path, token string) *http.Request {
		r := httptest.NewRequest(method, path, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return r
	}
	west := k.Token("westeurope", "eastus", t0)
	brazil := k.Token("brazilsouth", "eastus", t0)
	probe := k.ProbeToken(t0)
	checks := []struct {
		name                string
		r                   *http.Request
		authorized, probeOK bool
	}{
		{"a member", req("GET", "/_georeg/v1/feed", west), true, true},
		{"another node of this region", req("GET", "/_georeg/v1/feed", k.Token("eastus", "eastus", t0)), true, true},
		{"a non-member", req("GET", "/_georeg/v1/feed", brazil), false, false},
		{"a non-member registering itself", req("PUT", JoinPath+"brazilsouth", brazil), true, true},
		{"a non-member registering another", req("PUT", JoinPath+"westeurope", brazil), false, false},
		{"the front door", req("GET", "/_georeg/v1/status", probe), false, true},
		{"no token", req("GET", "/_georeg/v1/status", ""), false, false},
	}
	for _, c := range checks {
		if got := v.Authorized(c.r); got != c.authorized {
			t.Errorf("%s: authorized %v, want %v", c.name, got, c.authorized)
		}
		if got := v.Probe(c.r); got != c.probeOK {
			t.Errorf("%s: probe %v, want %v", c.name, got, c.probeOK)
		}
	}
	delete(members, "westeurope") // the region is deleted: its tokens stop at once
	if v.Authorized(req("GET", "/_georeg/v1/feed", west)) {
		t.Fatal("a deleted region's token is still accepted")
	}
}
