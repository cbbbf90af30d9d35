package transfer

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
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

// CachePings returns next answering a registry's ping (GET /v2/ without
// credentials) from a copy kept for ttl: a 200 or 401 answer with a body
// of at most 16 KiB. Anything else goes to next.
func CachePings(next http.RoundTripper, ttl time.Duration) http.RoundTripper {
	return &pingCache{next: next, ttl: ttl, kept: map[string]*keptPing{}}
}

type pingCache struct {
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

func (c *pingCache) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || req.URL.Path != "/v2/" || req.URL.RawQuery != "" || req.Header.Get("Authorization") != "" {
		return c.next.RoundTrip(req)
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
func (c *pingCache) keep(key string, k *keptPing) {
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
