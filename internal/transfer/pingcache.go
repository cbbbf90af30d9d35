package transfer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Every client of a registry API (go-containerregistry's among them)
// starts by asking GET /v2/ what authentication it wants, before each
// repository it opens: a round trip to an upstream that may be an
// ocean away, in front of every cold pull's manifest. The answer (200,
// or 401 and its WWW-Authenticate challenge) changes when the upstream
// reconfigures its auth, not between images, so CachePings answers it
// from memory for ttl after it was last asked. So too the one failure
// that is a fact of the upstream's configuration, not a fault: an
// upstream served over plain HTTP (a rule's http:// source) answering
// the https:// ping clients try first.

// maxPingBody bounds the body of a ping kept.
const maxPingBody = 16 << 10

//
// A kept answer is dropped at once when a request to that registry with
// credentials is refused (401): the challenge it kept may be what changed.
// Warm asks a registry's ping ahead of any pull (the artifact cache warms
// its rules' upstreams as the rules arrive, and before the ttl runs out),
// so a cold pull's manifest is one round trip to the upstream even the
// first time.

// CachePings returns next answering a registry's ping (GET /v2/ without
// credentials) from a copy kept for ttl: a 200 or 401 answer with a body
// of at most 16 KiB. Anything else goes to next.
func CachePings(next http.RoundTripper, ttl time.Duration) *PingCache {
	return &PingCache{next: next, ttl: ttl, kept: map[string]*keptPing{}}
}

// PingCache is the transport CachePings returns.
type PingCache struct {
	next http.RoundTripper
	ttl  time.Duration
	mu   sync.Mutex
	kept map[string]*keptPing // scheme://host -> its ping's answer
}

type keptPing struct {
	err    error // the https:// ping of a plain-HTTP upstream
	status int
	header http.Header
	body   []byte
	at     time.Time
}

// maxKeptPings bounds the registries whose ping is kept.
const maxKeptPings = 1024

// TTL is how long a ping's answer is kept.
func (c *PingCache) TTL() time.Duration { return c.ttl }

func (c *PingCache) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || req.URL.Path != "/v2/" || req.URL.RawQuery != "" || req.Header.Get("Authorization") != "" {
		resp, err := c.next.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusUnauthorized && req.Header.Get("Authorization") != "" {
			c.forget(req.URL.Host)
		}
		return resp, err
	}
	key := req.URL.Scheme + "://" + req.URL.Host
	c.mu.Lock()
	k := c.kept[key]
	c.mu.Unlock()
	if k != nil && time.Since(k.at) < c.ttl && k.err != nil {
		return nil, k.err
	}
	if k != nil && time.Since(k.at) < c.ttl {
		return &http.Response{Status: http.StatusText(k.status), StatusCode: k.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: k.header.Clone(), Body: io.NopCloser(bytes.NewReader(k.body)), ContentLength: int64(len(k.body)), Request: req}, nil
	}
	return c.ask(req)
}

// Warm asks the ping of the registry at base (scheme://host) now and
// keeps its answer; for a plain-HTTP base ("http://"), the https:// ping
// clients try first too.
func (c *PingCache) Warm(ctx context.Context, base string) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return
	}
	schemes := []string{"https"}
	if u.Scheme == "http" {
		schemes = append(schemes, "http")
	}
	for _, scheme := range schemes {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+u.Host+"/v2/", nil)
		if err != nil {
			return
		}
		if resp, err := c.ask(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

// forget drops what is kept of host's pings.
func (c *PingCache) forget(host string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.kept, "https://"+host)
	delete(c.kept, "http://"+host)
}

// ask sends ping req to the registry and keeps its answer.
func (c *PingCache) ask(req *http.Request) (*http.Response, error) {
	key := req.URL.Scheme + "://" + req.URL.Host
	resp, err := c.next.RoundTrip(req)
	var rh tls.RecordHeaderError
	if err != nil && req.URL.Scheme == "https" && errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/" {
		// An HTTP answer to the TLS handshake.
		c.keep(key, &keptPing{err: err, at: time.Now()})
		return nil, err
	}
	if err != nil || (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized) {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPingBody+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) <= maxPingBody {
		c.keep(key, &keptPing{status: resp.StatusCode, header: resp.Header.Clone(), body: body, at: time.Now()})
	}
	return resp, nil
}

// keep keeps k as key's ping answer, unless maxKeptPings are kept
// within the ttl.
func (c *PingCache) keep(key string, k *keptPing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.kept) >= maxKeptPings {
		for h, old := range c.kept {
			if time.Since(old.at) >= c.ttl {
				delete(c.kept, h)
			}
		}
	}
	if len(c.kept) < maxKeptPings {
		c.kept[key] = k
	}
}
