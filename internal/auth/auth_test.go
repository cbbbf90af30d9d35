package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"))
}

// openAuth returns an auth service over a real region's settings, with a
// signing key, a user admin and a token "reader" (content/read on app/*).
func openAuth(t *testing.T) (*auth.Service, *region.Region) {
	t.Helper()
	return openAuthF(t)
}

func openAuthF(t testing.TB) (*auth.Service, *region.Region) {
	t.Helper()
	r, err := region.Open(t.Context(), region.Config{Name: "eastus", DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	s := auth.New(auth.Config{Enabled: true}, r, slog.New(slog.DiscardHandler))
	if err := s.Bootstrap(t.Context()); err != nil {
		t.Fatal(err)
	}
	put := func(kind, name string, v any) {
		b, _ := json.Marshal(v)
		if _, err := r.PutSetting(t.Context(), kind, name, b); err != nil {
			t.Fatal(err)
		}
	}
	hash := func(p string) string { h, _ := auth.HashPassword(p); return h }
	put(auth.KindUser, "admin", auth.User{PasswordHash: hash("admin-pass")})
	put(auth.KindScopeMap, "readers", auth.ScopeMap{Actions: []string{"repositories/app/*/content/read"}})
	put(auth.KindToken, "reader", auth.Token{ScopeMap: "readers", Status: "enabled", PasswordHash: hash("reader-pass")})
	past := time.Now().Add(-time.Hour)
	put(auth.KindToken, "old", auth.Token{ScopeMap: "readers", Status: "enabled", Expiry: &past, PasswordHash: hash("old-pass")})
	put(auth.KindToken, "off", auth.Token{ScopeMap: "readers", Status: "disabled", PasswordHash: hash("off-pass")})
	return s, r
}

func TestScopesParseAsDockerSendsThem(t *testing.T) {
	got, err := auth.ParseScopes([]string{"repository:app/web:pull,push", "registry:catalog:* repository:x:pull"})
	if err != nil || len(got) != 3 || got[0].Name != "app/web" || strings.Join(got[0].Actions, ",") != "pull,push" ||
		got[1].Type != "registry" || got[2].Name != "x" {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []string{"repository:app", "repository:App:pull", "image:app:pull", "registry:other:*", "repository:app:pu ll", "repository::pull"} {
		if _, err := auth.ParseScope(bad); err == nil {
			t.Errorf("ParseScope(%q) accepted", bad)
		}
	}
}

func TestScopeMapRulesGrantOnlyWhatTheySay(t *testing.T) {
	var rules []auth.Rule
	for _, a := range []string{"repositories/app/*/content/read", "repositories/app/web/content/write", "repositories/*/metadata/read"} {
		r, err := auth.ParseRule(a)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	p := &auth.Principal{Name: "t", Kind: auth.KindToken, Rules: rules}
	want := []auth.Scope{
		{Type: "repository", Name: "app/web", Actions: []string{"pull", "push", "delete"}},
		{Type: "repository", Name: "app/api", Actions: []string{"pull", "push"}},
		{Type: "repository", Name: "other", Actions: []string{"pull", "metadata_read"}},
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
	}
	got := p.Grant(want)
	var s []string
	for _, g := range got {
		s = append(s, g.String())
	}
	if strings.Join(s, " ") != "repository:app/web:pull,push repository:app/api:pull repository:other:metadata_read registry:catalog:*" {
		t.Fatalf("granted %v", s)
	}
	for _, bad := range []string{"repositories/app/content/pull", "repos/app/content/read", "repositories/App/content/read", "repositories/content/read"} {
		if _, err := auth.ParseRule(bad); err == nil {
			t.Errorf("ParseRule(%q) accepted", bad)
		}
	}
}

func TestPasswordsAndTokenStates(t *testing.T) {
	s, _ := openAuth(t)
	ctx := t.Context()
	if p, err := s.Authenticate(ctx, "admin", "admin-pass"); err != nil || !p.Admin {
		t.Fatalf("admin: %+v %v", p, err)
	}
	if p, err := s.Authenticate(ctx, "reader", "reader-pass"); err != nil || p.Admin || len(p.Rules) != 1 {
		t.Fatalf("reader: %+v %v", p, err)
	}
	for _, c := range [][2]string{{"admin", "wrong"}, {"reader", "admin-pass"}, {"old", "old-pass"}, {"off", "off-pass"}, {"nobody", "x"}} {
		if _, err := s.Authenticate(ctx, c[0], c[1]); err != auth.ErrCredentials {
			t.Errorf("%s/%s: %v", c[0], c[1], err)
		}
	}
}

// request returns a /v2 request with the bearer token raw ("" for none).
func request(raw string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://registry.test/v2/app/web/manifests/v1", nil)
	if raw != "" {
		r.Header.Set("Authorization", "Bearer "+raw)
	}
	return r
}

func check(t *testing.T, s *auth.Service, raw string, need auth.Need) (*ocierr.Code, http.Header) {
	t.Helper()
	w := httptest.NewRecorder()
	_, err := s.Check(w, request(raw), need)
	if err == nil {
		return nil, w.Header()
	}
	oe, _ := ocierr.From(err)
	return oe.Code, w.Header()
}

func TestTokensAreCheckedForSignatureServiceTimeAndScope(t *testing.T) {
	s, r := openAuth(t)
	ctx := t.Context()
	pull := auth.Need{Repo: "app/web", Actions: []string{auth.ActionPull}}
	push := auth.Need{Repo: "app/web", Actions: []string{auth.ActionPush}}
	reader, _ := s.Authenticate(ctx, "reader", "reader-pass")
	issue := func(s *auth.Service, p *auth.Principal, scopes ...string) string {
		want, err := auth.ParseScopes(scopes)
		if err != nil {
			t.Fatal(err)
		}
		raw, _, err := s.Issue(ctx, p, p.Grant(want), false)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	good := issue(s, reader, "repository:app/web:pull,push")
	if code, _ := check(t, s, good, pull); code != nil {
		t.Fatalf("a reader's pull token: %v", code)
	}
	if code, _ := check(t, s, good, push); code != ocierr.Denied {
		t.Fatalf("a reader pushing: %v, want DENIED", code)
	}
	code, h := check(t, s, "", pull)
	if code != ocierr.Unauthorized || !strings.Contains(h.Get("WWW-Authenticate"), `Bearer realm="http://registry.test/oauth2/token",service="georeg",scope="repository:app/web:pull"`) {
		t.Fatalf("no token: %v %q", code, h.Get("WWW-Authenticate"))
	}
	// A token for another repository asks for a new one (insufficient scope).
	other := issue(s, reader, "repository:app/api:pull")
	if code, h := check(t, s, other, pull); code != ocierr.Unauthorized || !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatalf("other repository's token: %v %q", code, h.Get("WWW-Authenticate"))
	}
	expired := issue(s.WithClock(func() time.Time { return time.Now().Add(-time.Hour) }), reader, "repository:app/web:pull")
	if code, _ := check(t, s, expired, pull); code != ocierr.Unauthorized {
		t.Fatalf("expired: %v", code)
	}
	elsewhere := issue(auth.New(auth.Config{Enabled: true, Service: "other-registry"}, r, slog.New(slog.DiscardHandler)), reader, "repository:app/web:pull")
	if code, _ := check(t, s, elsewhere, pull); code != ocierr.Unauthorized {
		t.Fatalf("another service's token: %v", code)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := jwt.NewWithClaims(jwt.SigningMethodES256, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: auth.Issuer, Subject: "admin", Audience: jwt.ClaimStrings{"georeg"}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Admin: true, Kind: auth.KindUser})
	forged.Header["kid"] = "f00d"
	raw, _ := forged.SignedString(key)
	if code, _ := check(t, s, raw, pull); code != ocierr.Unauthorized {
		t.Fatalf("a token signed by another key: %v", code)
	}
	none := jwt.NewWithClaims(jwt.SigningMethodNone, auth.Claims{Admin: true})
	raw, _ = none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if code, _ := check(t, s, raw, pull); code != ocierr.Unauthorized {
		t.Fatalf("an unsigned token: %v", code)
	}
	refresh, _, _ := s.Issue(ctx, reader, nil, true)
	if code, _ := check(t, s, refresh, pull); code != ocierr.Unauthorized {
		t.Fatalf("a refresh token on /v2: %v", code)
	}
}

func TestTokenEndpointGrantsBasicAndOAuth2(t *testing.T) {
	s, _ := openAuth(t)
	srv := httptest.NewServer(s.TokenHandler())
	defer srv.Close()
	get := func(user, pass, query string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"?"+query, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := get("reader", "reader-pass", "service=georeg&scope=repository:app/web:pull,push&offline_token=true")
	if code != 200 || out["token"] == nil || out["refresh_token"] == nil || out["scope"] != "repository:app/web:pull" {
		t.Fatalf("basic: %d %v", code, out)
	}
	if code, _ := get("reader", "wrong", "service=georeg"); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	if code, _ := get("reader", "reader-pass", "service=another"); code != 400 {
		t.Fatalf("another service: %d", code)
	}
	if code, out := get("", "", "service=georeg&scope=repository:app/web:pull"); code != 200 || out["scope"] != nil {
		t.Fatalf("anonymous with anonymous pull off gets nothing granted: %d %v", code, out)
	}
	post := func(form string) (int, map[string]any) {
		resp, err := http.Post(srv.URL, "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out = post("grant_type=password&username=admin&password=admin-pass&service=georeg&scope=repository:x:push&client_id=test")
	if code != 200 || out["access_token"] == nil || out["refresh_token"] == nil {
		t.Fatalf("password grant: %d %v", code, out)
	}
	code, out = post("grant_type=refresh_token&refresh_token=" + out["refresh_token"].(string) + "&service=georeg&scope=repository:x:pull&client_id=test")
	if code != 200 || out["scope"] != "repository:x:pull" {
		t.Fatalf("refresh grant: %d %v", code, out)
	}
	if code, _ := post("grant_type=refresh_token&refresh_token=garbage&service=georeg"); code != 401 {
		t.Fatalf("bad refresh token: %d", code)
	}
	if code, _ := post("grant_type=client_credentials"); code != 400 {
		t.Fatalf("unknown grant: %d", code)
	}
}

func TestNetworkRulesAllowListedAddressesOnly(t *testing.T) {
	rules := auth.NetworkRules{DefaultAction: auth.Deny, IPRules: []auth.IPRule{
		{Action: auth.Allow, Value: "10.1.0.0/16"}, {Action: auth.Allow, Value: "127.0.0.2"}, {Action: auth.Allow, Value: "2001:db8::/32"},
		{Action: auth.Allow, Value: "::ffff:172.16.0.0/112"}}} // an IPv4-mapped range means its IPv4 range
	if err := rules.Validate(); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"10.1.2.3": true, "10.2.0.1": false, "127.0.0.2": true, "127.0.0.3": false,
		"2001:db8::5": true, "2001:db9::5": false, "::ffff:10.1.0.9": true, "172.16.0.9": true, "172.17.0.1": false} {
		if got := rules.Allows(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	if !(auth.NetworkRules{DefaultAction: auth.Allow}).Allows(netip.MustParseAddr("8.8.8.8")) {
		t.Error("default Allow denies")
	}
	bad := auth.NetworkRules{DefaultAction: "Block", IPRules: []auth.IPRule{{Action: "Deny", Value: "10.0.0.0/33"}}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "defaultAction") || !strings.Contains(err.Error(), "ipRules[0]") {
		t.Fatalf("validate: %v", err)
	}
}

func TestClientAddressTrustsOnlyConfiguredProxies(t *testing.T) {
	_, r := openAuth(t)
	s := auth.New(auth.Config{TrustedProxies: []string{"127.0.0.1/32"}}, r, slog.New(slog.DiscardHandler))
	req := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	req.RemoteAddr = "127.0.0.1:4000"
	req.Header.Set("X-Forwarded-For", "10.9.9.9, 127.0.0.3")
	if a, _ := s.ClientAddr(req); a.String() != "127.0.0.3" {
		t.Fatalf("via the door: %s", a)
	}
	req.RemoteAddr = "127.0.0.5:4000"
	if a, _ := s.ClientAddr(req); a.String() != "127.0.0.5" {
		t.Fatalf("a client claiming a forwarded address: %s", a)
	}
}

// TestAnAnonymousTokenEndsWithAnonymousPull: a token issued for anonymous
// pull stops working once anonymous pull is turned off (within the
// switches' refresh, here at once), not at its expiry.
func TestAnAnonymousTokenEndsWithAnonymousPull(t *testing.T) {
	s, r := openAuth(t)
	set := func(on bool) {
		b, _ := json.Marshal(auth.AnonymousPull{Enabled: on})
		if _, err := r.PutSetting(t.Context(), auth.KindRegistry, auth.SettingAnonymousPull, b); err != nil {
			t.Fatal(err)
		}
		s.Forget()
	}
	set(true)
	srv := httptest.NewServer(s.TokenHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "?service=georeg&scope=repository:app/web:pull")
	if err != nil {
		t.Fatal(err)
	}
	var ans struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	pull := func() error {
		req := httptest.NewRequest(http.MethodGet, "/v2/app/web/manifests/v1", nil)
		req.Header.Set("Authorization", "Bearer "+ans.Token)
		_, err := s.Check(httptest.NewRecorder(), req, auth.Need{Repo: "app/web", Actions: []string{auth.ActionPull}})
		return err
	}
	if err := pull(); err != nil {
		t.Fatalf("an anonymous token with anonymous pull on: %v", err)
	}
	set(false)
	if err := pull(); !ocierr.Unauthorized.Is(err) || !strings.Contains(err.Error(), "anonymous pull was turned off") {
		t.Fatalf("the anonymous token after anonymous pull was turned off: %v", err)
	}
}

// TestTheRealmIsOneOfTheRegistrysNames: a challenge names the token
// endpoint at the request's Host only when that is one of the registry's
// names; another Host gets the region's own.
func TestTheRealmIsOneOfTheRegistrysNames(t *testing.T) {
	s, _ := openAuth(t)
	s.SetHosts(func(h string) bool { return strings.HasPrefix(h, "registry.example.com") }, "eastus.example.com:5001")
	realm := func(host string) string {
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		r.Host = host
		w := httptest.NewRecorder()
		if _, err := s.Check(w, r, auth.Need{Base: true}); err == nil {
			t.Fatal("no challenge without a token")
		}
		return w.Header().Get("WWW-Authenticate")
	}
	if got := realm("registry.example.com"); !strings.Contains(got, `realm="http://registry.example.com/oauth2/token"`) {
		t.Fatalf("the registry's name: %s", got)
	}
	if got := realm("evil.example.net"); !strings.Contains(got, `realm="http://eastus.example.com:5001/oauth2/token"`) {
		t.Fatalf("another Host: %s", got)
	}
}
