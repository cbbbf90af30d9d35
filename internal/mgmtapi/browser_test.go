package mgmtapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/georeg/georeg/internal/ocierr"
)

// TestBrowsersCannotActInAnAdminsName: a cross-site form or text/plain
// post, a request a browser marks as from another site or origin, and
// (with auth off) a Host that is not the registry's are refused; clients
// (the CLI: JSON, no Origin) and the registry's own pages pass.
func TestBrowsersCannotActInAnAdminsName(t *testing.T) {
	g := NewBrowserGuard(true, []string{"registry.example.com"}, "https://eastus.example.com:5001", "")
	req := func(method, host, contentType, body string, header map[string]string) *http.Request {
		r := httptest.NewRequest(method, "http://"+host+"/_georeg/v1/import", strings.NewReader(body))
		r.Host = host
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		for k, v := range header {
			r.Header.Set(k, v)
		}
		return r
	}
	json := `{"source":"x"}`
	cases := []struct {
		name string
		r    *http.Request
		want *ocierr.Code // nil: allowed
	}{
		{"the CLI", req("POST", "127.0.0.1:5001", "application/json", json, nil), nil},
		{"the CLI with a charset", req("POST", "127.0.0.1:5001", "application/json; charset=utf-8", json, nil), nil},
		{"a delete without a body", req("DELETE", "127.0.0.1:5001", "", "", nil), nil},
		{"a read from another site", req("GET", "127.0.0.1:5001", "", "", map[string]string{"Sec-Fetch-Site": "cross-site"}), nil},
		{"the registry's own page", req("POST", "registry.example.com", "application/json", json, map[string]string{"Origin": "https://registry.example.com", "Sec-Fetch-Site": "same-origin"}), nil},
		{"a configured endpoint's name", req("GET", "eastus.example.com:5001", "", "", nil), nil},
		{"localhost", req("GET", "localhost:5001", "", "", nil), nil},
		{"an IPv6 literal", req("GET", "[::1]:5001", "", "", nil), nil},
		{"a text/plain form", req("POST", "127.0.0.1:5001", "text/plain", json, nil), ocierr.MediaTypeUnsupported},
		{"a urlencoded form", req("POST", "127.0.0.1:5001", "application/x-www-form-urlencoded", "a=b", nil), ocierr.MediaTypeUnsupported},
		{"a body without a type", req("PUT", "127.0.0.1:5001", "", json, nil), ocierr.MediaTypeUnsupported},
		{"a post from another origin", req("POST", "127.0.0.1:5001", "application/json", json, map[string]string{"Origin": "https://evil.example"}), ocierr.Denied},
		{"a bodiless post from another site", req("POST", "127.0.0.1:5001", "", "", map[string]string{"Sec-Fetch-Site": "cross-site"}), ocierr.Denied},
		{"a post from a sibling site", req("POST", "127.0.0.1:5001", "application/json", json, map[string]string{"Sec-Fetch-Site": "same-site"}), ocierr.Denied},
		{"a rebound name", req("GET", "evil.example:5001", "", "", nil), ocierr.Denied},
	}
	for _, c := range cases {
		err := g.Check(c.r)
		switch {
		case c.want == nil && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != nil && !c.want.Is(err):
			t.Errorf("%s: %v, want %s", c.name, err, c.want.Name)
		}
	}
	// With auth on, any name is answered (credentials are per origin).
	if err := NewBrowserGuard(false, nil).Check(req("GET", "registry.internal:5001", "", "", nil)); err != nil {
		t.Errorf("auth on, another name: %v", err)
	}
}
