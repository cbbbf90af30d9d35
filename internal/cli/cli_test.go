package cli

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestARegistryGivenAsHostPortGetsTheSchemeItServes(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000":          "http://127.0.0.1:5000",
		"localhost:5001/":         "http://localhost:5001",
		"[::1]:5000":              "http://[::1]:5000",
		"registry.example.com":    "https://registry.example.com",
		"reg.example:443":         "https://reg.example:443",
		"https://127.0.0.1:5000/": "https://127.0.0.1:5000",
		"http://reg.example:80":   "http://reg.example:80",
	} {
		if got := NormalizeRegistry(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestFailuresToReachTheRegistrySayWhatToDo: nothing listening, plain
// HTTP asked for HTTPS and the reverse, and a CA not trusted each get
// words, not a transport error.
func TestFailuresToReachTheRegistrySayWhatToDo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"self":"eastus"}`))
	})
	plain := httptest.NewServer(ok)
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(ok)
	defer tlsSrv.Close()
	for _, tc := range []struct{ registry, want string }{
		{closed, "no registry answers at http://" + closed},
		{strings.Replace(plain.URL, "http://", "https://", 1), "serves plain HTTP: use --registry " + plain.URL},
		{strings.Replace(tlsSrv.URL, "https://", "http://", 1), "serves HTTPS: use --registry " + tlsSrv.URL},
		{tlsSrv.URL, "signed by a CA this machine does not trust"},
	} {
		_, err := New(tc.registry, 5*time.Second).Regions(ctx)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--registry %s: %v, want %q", tc.registry, err, tc.want)
		}
	}
	if r, err := New(strings.TrimPrefix(plain.URL, "http://"), 5*time.Second).Regions(ctx); err != nil || r.Self != "eastus" {
		t.Fatalf("host:port of a loopback registry: %+v %v", r, err)
	}
}
