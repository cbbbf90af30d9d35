package outbound

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestTheOutboundPolicy: metadata and link-local addresses are never
// reached, loopback and private ones only when allowed, public ones
// always.
func TestTheOutboundPolicy(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("169.254.0.0/16")}
	cases := []struct {
		addr    string
		allowed bool
	}{
		{"169.254.169.254", false}, // allowed by a rule, refused all the same
		{"fd00:ec2::254", false},
		{"100.100.100.200", false},
		{"fe80::1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"224.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"127.0.0.1", true},
		{"127.0.0.2", false},
		{"::1", false},
		{"::ffff:127.0.0.1", true},
		{"10.20.3.4", true},
		{"10.21.3.4", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"fd12::1", false},
		{"8.8.8.8", true},
		{"2001:4860:4860::8888", true},
	}
	for _, c := range cases {
		err := Check(netip.MustParseAddr(c.addr), allow)
		if (err == nil) != c.allowed || (err != nil && !errors.Is(err, ErrRefused)) {
			t.Errorf("%s: %v, want allowed %v", c.addr, err, c.allowed)
		}
	}
}

// TestADialReachesOnlyWhatThePolicyAllows: the check is on the address
// dialled, so a redirect from an allowed host to one that is not (here
// 127.0.0.1 to 127.0.0.2) fails at the second hop; a rule added is used
// within a second; a refused answer's body is read up to the limit.
func TestADialReachesOnlyWhatThePolicyAllows(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("127.0.0.2 is not usable here: %v", err) // every Linux loopback has it
	}
	inner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "internal") }))
	inner.Listener = l
	inner.Start()
	defer inner.Close()
	outer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, strings.Repeat("x", 1<<20))
			return
		}
		http.Redirect(w, r, inner.URL, http.StatusFound)
	}))
	defer outer.Close()
	var rules atomic.Pointer[[]netip.Prefix]
	rules.Store(&[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	p := New(func(context.Context) ([]netip.Prefix, error) { return *rules.Load(), nil })
	client := &http.Client{Timeout: 5 * time.Second, Transport: LimitErrorBodies(&http.Transport{DialContext: p.DialContext(&net.Dialer{})})}
	_, err = client.Get(outer.URL + "/redirect")
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "127.0.0.2") {
		t.Fatalf("a redirect to 127.0.0.2: %v", err)
	}
	resp, err := client.Get(outer.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(body) != ErrorBodyLimit {
		t.Fatalf("a 400's body: %d bytes read, want %d", len(body), ErrorBodyLimit)
	}
	rules.Store(&[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("127.0.0.2/32")})
	time.Sleep(refresh + 100*time.Millisecond)
	resp, err = client.Get(outer.URL + "/redirect")
	if err != nil {
		t.Fatalf("after allowing 127.0.0.2: %v", err)
	}
	resp.Body.Close()
}

func TestTrimKeepsWholeCharacters(t *testing.T) {
	s := strings.Repeat("é", 400)
	got := Trim(s)
	if !strings.HasSuffix(got, "…") || len(got) > 300+len("…") || strings.ContainsRune(got, '\uFFFD') {
		t.Fatalf("Trim: %d bytes %q", len(got), got[len(got)-8:])
	}
}
