// Package outbound is the one policy for connections a region opens on a
// user's or an admin's word: imports (and the token realms and redirects
// they follow), webhook deliveries and pings, and registered replica
// endpoints. Configured peers (the operator's configuration file) are not
// subject to it.
//
// The policy is checked on the address actually dialled, after name
// resolution (net.Dialer.Control), so a name that resolves to a public
// address when checked and an internal one when used (DNS rebinding)
// gains nothing:
//
//   - link-local addresses (169.254.0.0/16, fe80::/10, which hold the
//     cloud metadata services), unspecified, multicast and broadcast
//     addresses, and the other known metadata addresses are always
//     refused;
//   - loopback (127.0.0.0/8, ::1) and private ranges (10/8, 172.16/12,
//     192.168/16, 100.64/10, fc00::/7) are refused unless the registry's
//     outbound rules allow them (a replicated setting: `georeg
//     outbound-rule add --ip-address 10.0.0.0/8`; `georeg up` allows
//     loopback);
//   - every other (public) address is allowed.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// ErrRefused wraps every refused address.
var ErrRefused = errors.New("refused by the registry's outbound policy")

var (
	alwaysRefused = prefixes("169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128", "224.0.0.0/4", "ff00::/8",
		"255.255.255.255/32", "fd00:ec2::254/128", "100.100.100.200/32")
	internal = prefixes("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
		"100.64.0.0/10", "fc00::/7", "198.18.0.0/15")
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Check says why a connection to addr is refused given the allowed
// ranges, or nil.
func Check(addr netip.Addr, allow []netip.Prefix) error {
	addr = addr.Unmap()
	switch {
	case contains(alwaysRefused, addr):
		return fmt.Errorf("%w: %s is a link-local, metadata, multicast or unspecified address, never reached", ErrRefused, addr)
	case contains(internal, addr) && !contains(allow, addr):
		return fmt.Errorf("%w: %s is a loopback or private address; an admin can allow it: georeg outbound-rule add --ip-address %s", ErrRefused, addr, addr)
	}
	return nil
}

// Policy is a region's outbound policy: Check with the registry's
// outbound rules, read through rules (cached for a second).
type Policy struct {
	rules func(ctx context.Context) ([]netip.Prefix, error)

	mu     sync.Mutex
	cached []netip.Prefix
	read   time.Time
}

// refresh is how long rules read are used before they are read again.
const refresh = time.Second

// New returns the policy whose allowed ranges rules reads (nil: none).
func New(rules func(ctx context.Context) ([]netip.Prefix, error)) *Policy {
	return &Policy{rules: rules}
}

// Allowed returns the ranges allowed now.
func (p *Policy) Allowed(ctx context.Context) []netip.Prefix {
	if p == nil || p.rules == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.read) < refresh && !p.read.IsZero() {
		return p.cached
	}
	if rules, err := p.rules(ctx); err == nil {
		p.cached, p.read = rules, time.Now()
	}
	return p.cached
}

// Dialer returns a dialer whose every connection, whatever name it was
// asked for, reaches only an address the policy allows.
func (p *Policy) Dialer(ctx context.Context, base *net.Dialer) *net.Dialer {
	d := *base
	d.Control = func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot read the address %q", ErrRefused, address)
		}
		return Check(ap.Addr(), p.Allowed(ctx))
	}
	return &d
}

// DialContext dials through Dialer: for an http.Transport.
func (p *Policy) DialContext(base *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return p.Dialer(ctx, base).DialContext(ctx, network, addr)
	}
}

// ErrorBodyLimit is how much of a remote's answer that is not a success
// is read: enough for an OCI error envelope, not a whole page of whatever
// a misdirected request reached.
const ErrorBodyLimit = 64 << 10

// LimitErrorBodies wraps rt so that a response that is not 2xx yields at
// most ErrorBodyLimit bytes of body to whoever reads it.
func LimitErrorBodies(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
			resp.Body = limitedBody{Reader: io.LimitReader(resp.Body, ErrorBodyLimit), Closer: resp.Body}
		}
		return resp, err
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type limitedBody struct {
	io.Reader
	io.Closer
}

// Trim shortens text from a remote (an error it answered) to what a job's
// or a webhook delivery's error shows: 300 bytes, cut between characters.
func Trim(s string) string {
	const max = 300
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1] // cut inside a character
	}
	return s + "…"
}
