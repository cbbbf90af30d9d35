package mgmtapi

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/georeg/georeg/internal/ocierr"
)

// BrowserGuard keeps web pages an admin visits from using the management
// API in the admin's name (CSRF), and, with auth off, pages on other sites
// from reaching it through DNS rebinding.
type BrowserGuard struct {
	// AuthOff checks the Host header: with auth off a page whose name
	// rebinds to this region's address would otherwise act here.
	AuthOff bool
	// Hosts are the names (without port) this region answers to besides
	// IP literals and localhost: http.allowedHosts and the hosts of its
	// configured endpoints.
	Hosts map[string]bool
}

// NewBrowserGuard returns a guard admitting the hosts of urls and hosts
// (names or host:port).
func NewBrowserGuard(authOff bool, hosts []string, urls ...string) BrowserGuard {
	g := BrowserGuard{AuthOff: authOff, Hosts: map[string]bool{}}
	for _, h := range hosts {
		g.Hosts[strings.ToLower(hostOnly(h))] = true
	}
	for _, u := range urls {
		if p, err := url.Parse(u); err == nil && p.Host != "" {
			g.Hosts[strings.ToLower(p.Hostname())] = true
		}
	}
	return g
}

// Check says why r must not reach the management API, or nil. Every
// request: with auth off, a Host that is not this region's. Requests that
// change something (not GET, HEAD or OPTIONS): one a browser marks as
// sent from another site (Origin not this host, Sec-Fetch-Site
// cross-site or same-site), and a body that is not application/json (a
// cross-site form or text/plain post is the CSRF vector: a page cannot
// send JSON to another site without a preflight this API never allows).
func (g BrowserGuard) Check(r *http.Request) error {
	if g.AuthOff && !g.AllowsHost(r.Host) {
		return ocierr.Denied.Withf("Host %q is not one of this registry's names: add it to http.allowedHosts (with auth off, only listed names, IP addresses and localhost are answered, against DNS rebinding)", hostOnly(r.Host))
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return ocierr.Denied.Withf("a browser sent this request from another site (Sec-Fetch-Site: %s): the management API takes changes only from its own pages and from clients", r.Header.Get("Sec-Fetch-Site"))
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		o, err := url.Parse(origin)
		if err != nil || !strings.EqualFold(o.Host, r.Host) {
			return ocierr.Denied.Withf("a browser sent this request from %s, another site: the management API takes changes only from its own pages and from clients", origin)
		}
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return ocierr.MediaTypeUnsupported.Withf("send the body as Content-Type: application/json (got %s)", quoteOrNone(r.Header.Get("Content-Type")))
		}
	}
	return nil
}

// AllowsHost reports whether hostport (a Host header) names this region:
// an IP address, localhost, or one of Hosts.
func (g BrowserGuard) AllowsHost(hostport string) bool {
	h := strings.ToLower(hostOnly(hostport))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") || g.Hosts[h] {
		return true
	}
	return net.ParseIP(strings.Trim(h, "[]")) != nil
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func quoteOrNone(s string) string {
	if s == "" {
		return "none"
	}
	return `"` + s + `"`
}
