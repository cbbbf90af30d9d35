package auth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/georeg/georeg/internal/auth"
)

// FuzzParseScopes: any scope parameter is refused or parses into scopes
// whose names are valid and whose rendering parses back the same.
func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"repository:app/web:pull,push", "registry:catalog:*", "repository:a:pull repository:b:push",
		"repository:app", "::", "repository:a:b:c:pull", "repository:x:pull,pull"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		scopes, err := auth.ParseScopes([]string{s})
		if err != nil {
			return
		}
		for _, sc := range scopes {
			back, err := auth.ParseScope(sc.String())
			if err != nil || back.String() != sc.String() {
				t.Fatalf("%q parsed to %q, which reparses to %q (%v)", s, sc, back, err)
			}
		}
	})
}

// FuzzParseRule: a scope-map action is refused or round-trips.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"repositories/app/*/content/read", "repositories/*/metadata/read", "repositories/a/content/pull", "repositories//content/read"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := auth.ParseRule(s)
		if err != nil {
			return
		}
		if r.String() != s {
			t.Fatalf("%q round-trips to %q", s, r.String())
		}
	})
}

// FuzzVerify: garbage in the Authorization header is never accepted and
// never panics: only tokens this registry signed pass.
func FuzzVerify(f *testing.F) {
	s, _ := openAuthF(f)
	for _, tok := range []string{"", "a.b.c", "eyJhbGciOiJub25lIn0.eyJnZW9yZWdfYWRtaW4iOnRydWV9.",
		"eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJnZW9yZWcifQ.x", strings.Repeat("A", 5000)} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		r := httptest.NewRequest(http.MethodGet, "/v2/app/manifests/v1", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if _, err := s.Check(httptest.NewRecorder(), r, auth.Need{Repo: "app", Actions: []string{auth.ActionPull}}); err == nil {
			t.Fatalf("token %q accepted", tok)
		}
	})
}
