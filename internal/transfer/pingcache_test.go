package transfer

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestARegistrysPingIsAskedOncePerTTL: two pings within the ttl reach the
// registry once and answer alike (status, challenge, body); a ping after
// the ttl, one with credentials, one answered 503 and any other request
// reach it every time.
func TestARegistrysPingIsAskedOncePerTTL(t *testing.T) {
	var pings, others atomic.Int64
	var status atomic.Int32
	status.Store(http.StatusUnauthorized)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			others.Add(1)
			return
		}
		pings.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://auth.example/token",service="example"`)
		w.WriteHeader(int(status.Load()))
		_, _ = io.WriteString(w, `{"errors":[]}`)
	}))
	defer srv.Close()
	c := CachePings(http.DefaultTransport, 200*time.Millisecond)
	ping := func(auth string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/v2/", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
	}
	s1, c1, b1 := ping("")
	s2, c2, b2 := ping("")
	if pings.Load() != 1 || s1 != 401 || s1 != s2 || c1 != c2 || b1 != b2 || c1 == "" || b1 == "" {
		t.Fatalf("two pings: %d reached the registry; %d %q %q, then %d %q %q", pings.Load(), s1, c1, b1, s2, c2, b2)
	}
	ping("Basic dTpw")
	if pings.Load() != 2 {
		t.Fatalf("a ping with credentials was answered from memory")
	}
	time.Sleep(250 * time.Millisecond)
	status.Store(http.StatusServiceUnavailable)
	ping("")
	ping("")
	if pings.Load() != 4 {
		t.Fatalf("after the ttl, pings answered 503: %d reached the registry, want 4", pings.Load())
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v2/library/x/manifests/latest", nil)
	for range 2 {
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if others.Load() != 2 {
		t.Fatalf("other requests: %d reached the registry, want 2", others.Load())
	}
}

// TestTheHTTPSPingOfAPlainHTTPUpstreamFailsOncePerTTL: clients ping
// https:// first; a plain-HTTP upstream's answer to it (not TLS) is kept
// like a ping's: the second attempt within the ttl opens no connection.
func TestTheHTTPSPingOfAPlainHTTPUpstreamFailsOncePerTTL(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := CachePings(http.DefaultTransport, time.Minute)
	for i := range 2 {
		req, _ := http.NewRequest("GET", "https://"+srv.Listener.Addr().String()+"/v2/", nil)
		resp, err := c.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("attempt %d: an https ping of a plain-HTTP server succeeded", i)
		}
	}
	if conns.Load() != 1 {
		t.Fatalf("two https pings of a plain-HTTP server opened %d connections, want 1", conns.Load())
	}
}

// TestAWarmedPingIsAnsweredFromMemoryUntilARequestIsRefused: Warm asks
// a registry's ping ahead of any client (for a plain-HTTP base, the
// https:// one too, kept as the failure it is), so the client's ping
// reaches nobody; a request with credentials answered 401 drops what was
// kept, and the next ping reaches the registry again.
func TestAWarmedPingIsAnsweredFromMemoryUntilARequestIsRefused(t *testing.T) {
	var pings, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			pings.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusUnauthorized) // wrong credentials
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := CachePings(http.DefaultTransport, time.Minute)
	host := srv.Listener.Addr().String()
	c.Warm(t.Context(), "http://"+host)
	if pings.Load() != 1 {
		t.Fatalf("warming reached the registry's ping %d times, want 1", pings.Load())
	}
	before := conns.Load()
	get := func(url, auth string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	if _, err := get("https://"+host+"/v2/", ""); err == nil {
		t.Fatal("the https:// ping of a plain-HTTP registry succeeded")
	}
	if resp, err := get("http://"+host+"/v2/", ""); err != nil || resp.StatusCode != 401 {
		t.Fatalf("the warmed ping: %v %v", resp, err)
	}
	if pings.Load() != 1 || conns.Load() != before {
		t.Fatalf("after warming, a client's two pings reached the registry (%d pings, %d new connections)", pings.Load()-1, conns.Load()-before)
	}
	if resp, err := get("http://"+host+"/v2/library/x/manifests/1", "Basic dTpw"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("a refused request: %v %v", resp, err)
	}
	get("http://"+host+"/v2/", "")
	if pings.Load() != 2 {
		t.Fatalf("after a refused request, the ping was answered from memory (%d pings)", pings.Load())
	}
}
