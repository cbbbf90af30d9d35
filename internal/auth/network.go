package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/georeg/georeg/internal/ocierr"
)

// NetworkRules are the registry's network rules, as ACR's: a default
// action and the addresses allowed whatever it is. They are one setting,
// the same in every region.
type NetworkRules struct {
	DefaultAction string   `json:"defaultAction"` // Allow or Deny
	IPRules       []IPRule `json:"ipRules"`
}

// IPRule allows an IPv4 or IPv6 address or CIDR range.
type IPRule struct {
	Action string `json:"action"` // Allow
	Value  string `json:"value"`
}

// Network rule actions.
const (
	Allow = "Allow"
	Deny  = "Deny"
)

// maxIPRules bounds the list, as ACR does (200).
const maxIPRules = 200

// Validate reports every problem, naming the rule.
func (n NetworkRules) Validate() error {
	var errs []error
	if n.DefaultAction != Allow && n.DefaultAction != Deny {
		errs = append(errs, fmt.Errorf("defaultAction %q: Allow or Deny", n.DefaultAction))
	}
	if len(n.IPRules) > maxIPRules {
		errs = append(errs, fmt.Errorf("ipRules: %d rules; at most %d", len(n.IPRules), maxIPRules))
	}
	for i, r := range n.IPRules {
		if r.Action != Allow {
			errs = append(errs, fmt.Errorf("ipRules[%d].action %q: only Allow", i, r.Action))
		}
		if _, err := parsePrefix(r.Value); err != nil {
			errs = append(errs, fmt.Errorf("ipRules[%d]: %v", i, err))
		}
	}
	return errors.Join(errs...)
}

// ParsePrefix reads an address or CIDR range, IPv4 or IPv6.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR range", s)
		}
		if a := p.Addr(); a.Is4In6() {
			// Client addresses are compared unmapped, so an IPv4-mapped
			// range (::ffff:10.0.0.0/104) means its IPv4 range.
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped range needs a prefix of at least /96", s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR range", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// ParsePrefix is parsePrefix for other packages (the CLI checks input).
func ParsePrefix(s string) (netip.Prefix, error) { return parsePrefix(s) }

// Allows reports whether a client at addr may use the registry.
func (n NetworkRules) Allows(addr netip.Addr) bool {
	return allowed(n.DefaultAction, n.prefixes(), addr)
}

// prefixes parses the allowed ranges (Validate checked them).
func (n NetworkRules) prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, r := range n.IPRules {
		if p, err := parsePrefix(r.Value); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func allowed(defaultAction string, allow []netip.Prefix, addr netip.Addr) bool {
	if defaultAction != Deny {
		return true
	}
	return contains(allow, addr)
}

func contains(prefixes []netip.Prefix, addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// switches are the registry-wide settings every request consults, read
// at most every switchesRefresh.
type switches struct {
	anonymousPull bool
	rules         *NetworkRules
	allow         []netip.Prefix // rules' ranges, parsed once per read
	at            time.Time
}

const switchesRefresh = time.Second

func (s *Service) switches(ctx context.Context) *switches {
	s.switchMu.Lock()
	defer s.switchMu.Unlock()
	if s.sw != nil && time.Since(s.sw.at) < switchesRefresh {
		return s.sw
	}
	sw := &switches{at: time.Now()}
	if st, err := s.settings.Setting(ctx, KindRegistry, SettingAnonymousPull); err == nil {
		var v AnonymousPull
		sw.anonymousPull = json.Unmarshal(st.Value, &v) == nil && v.Enabled
	}
	if st, err := s.settings.Setting(ctx, KindRegistry, SettingNetworkRules); err == nil {
		var v NetworkRules
		if json.Unmarshal(st.Value, &v) == nil && v.Validate() == nil {
			sw.rules, sw.allow = &v, v.prefixes()
		}
	}
	s.sw = sw
	return sw
}

// Forget drops the cached switches: a change made in this region takes
// effect at once (one made elsewhere within switchesRefresh of arriving).
func (s *Service) Forget() {
	s.switchMu.Lock()
	s.sw = nil
	s.switchMu.Unlock()
}

// ClientAddr returns the address network rules judge: the peer's, or for
// a request from a trusted proxy the rightmost X-Forwarded-For entry not
// itself a trusted proxy.
func (s *Service) ClientAddr(r *http.Request) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("remote address %q", r.RemoteAddr)
	}
	addr = addr.Unmap()
	if !contains(s.trusted, addr) {
		return addr, nil
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if a = a.Unmap(); !contains(s.trusted, a) {
			return a, nil
		}
	}
	return addr, nil
}

// NetworkCheck refuses a request whose client address the network rules
// deny, with DENIED (403) saying why.
func (s *Service) NetworkCheck(r *http.Request) error {
	sw := s.switches(r.Context())
	if sw.rules == nil || sw.rules.DefaultAction != Deny {
		return nil
	}
	addr, err := s.ClientAddr(r)
	if err != nil {
		return ocierr.Denied.Withf("the client address cannot be read (%v), and this registry's network rules deny by default", err)
	}
	if allowed(sw.rules.DefaultAction, sw.allow, addr) {
		return nil
	}
	return ocierr.Denied.Withf("client address %s is not allowed by this registry's network rules (default action Deny); an admin can allow it with: georeg network-rule add --ip-address %s", addr, addr)
}
