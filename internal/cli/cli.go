// Package cli is the client side of georeg's commands: it talks to a
// region's management endpoints and prints what they say.
package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/distribution/reference"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/webhook"
)

// Client talks to one region (or the front door).
type Client struct {
	Base string // e.g. http://127.0.0.1:5000
	HTTP *http.Client
	// User and Password, when set, are sent as basic auth (an admin user,
	// for the management API of a registry with auth on).
	User, Password string
}

// DefaultRegistry is the local `georeg up` front door.
const DefaultRegistry = "http://127.0.0.1:5000"

// NormalizeRegistry reads a --registry value: a base URL, a name saved
// by `georeg login --save-as`, or host[:port] alone, which means http on
// loopback (as `georeg up` serves) and https elsewhere. A trailing slash
// goes.
func NormalizeRegistry(s string) string {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/")
	if base, ok := lookupName(s); ok {
		return base
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || s == "" {
		return s
	}
	if loopbackHost(s) {
		return "http://" + s
	}
	return "https://" + s
}

// loopbackHost reports a host[:port] on this machine.
func loopbackHost(hostport string) bool {
	return strings.HasPrefix(hostport, "127.") || strings.HasPrefix(hostport, "localhost") || strings.HasPrefix(hostport, "[::1]")
}

// Ref is an image reference split into where, what and which.
type Ref struct {
	Registry   string // base URL; empty when the reference named none
	Repository string
	Reference  string // tag or digest
}

// ParseRef reads REPO:TAG, REPO@DIGEST, or HOST:PORT/REPO:TAG. A reference
// with a host names the registry to ask (over http on loopback, https
// otherwise).
func ParseRef(s string) (Ref, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Ref{}, fmt.Errorf("image reference %q: %w", s, err)
	}
	var r Ref
	domain := reference.Domain(named)
	if domain != "docker.io" || strings.HasPrefix(s, "docker.io/") {
		r.Registry = NormalizeRegistry(domain)
	}
	r.Repository = reference.Path(named)
	switch v := named.(type) {
	case reference.Digested:
		r.Reference = v.Digest().String()
	case reference.Tagged:
		r.Reference = v.Tag()
	default:
		r.Reference = "latest"
	}
	return r, nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.send(ctx, http.MethodGet, path, nil, out)
}

// Regions lists the registry's regions.
func (c *Client) Regions(ctx context.Context) (*mgmtapi.RegionsResponse, error) {
	var out mgmtapi.RegionsResponse
	return &out, c.get(ctx, "/_georeg/v1/regions", &out)
}

// ImageStatus asks where an image is.
func (c *Client) ImageStatus(ctx context.Context, repo, ref string) (*mgmtapi.ImageStatus, error) {
	var out mgmtapi.ImageStatus
	q := url.Values{"repository": {repo}, "reference": {ref}}
	return &out, c.get(ctx, "/_georeg/v1/images/status?"+q.Encode(), &out)
}

// LocalImageStatus is ImageStatus of the region c reaches only: its own
// state of ref, asking no other region.
func (c *Client) LocalImageStatus(ctx context.Context, repo, ref string) (*mgmtapi.ImageStatus, error) {
	var out mgmtapi.ImageStatus
	q := url.Values{"repository": {repo}, "reference": {ref}, "local": {"true"}}
	return &out, c.get(ctx, "/_georeg/v1/images/status?"+q.Encode(), &out)
}

// maxPages bounds how many pages of one listing the client follows.
const maxPages = 10_000

var nextLink = regexp.MustCompile(`<([^>]+)>;\s*rel="next"`)

// send sends one request and decodes its answer into out. A listing
// answered in pages (a Link header, rel="next") is followed to its end
// when out points to a slice: the pages are appended in order.
func (c *Client) send(ctx context.Context, method, path string, body any, out any) error {
	next, err := c.sendOne(ctx, method, path, body, out)
	if err != nil || next == "" || method != http.MethodGet {
		return err
	}
	dst := reflect.ValueOf(out)
	if dst.Kind() != reflect.Pointer || dst.Elem().Kind() != reflect.Slice {
		return nil
	}
	for range maxPages {
		page := reflect.New(dst.Elem().Type())
		if next, err = c.sendOne(ctx, http.MethodGet, next, nil, page.Interface()); err != nil {
			return err
		}
		dst.Elem().Set(reflect.AppendSlice(dst.Elem(), page.Elem()))
		if next == "" {
			return nil
		}
	}
	return fmt.Errorf("%s: more than %d pages", path, maxPages)
}

// sendOne sends one request, decodes its answer into out and returns the
// path of the next page, if the answer has one.
func (c *Client) sendOne(ctx context.Context, method, path string, body any, out any) (string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Base, "/")+path, rd)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.User != "" {
		req.SetBasicAuth(c.User, c.Password)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", explain(c.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusBadRequest && resp.Header.Get("Content-Type") != "application/json" {
			// Go's HTTPS server answers a plain HTTP request so.
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			if strings.Contains(string(b), "HTTPS server") {
				return "", fmt.Errorf("%s serves HTTPS: use --registry %s", c.Base, strings.Replace(c.Base, "http://", "https://", 1))
			}
			return "", ocierr.Read(&http.Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(b))})
		}
		return "", ocierr.Read(resp)
	}
	var next string
	if m := nextLink.FindStringSubmatch(resp.Header.Get("Link")); m != nil && strings.HasPrefix(m[1], "/") {
		next = m[1] // a path on the same registry, never another host
	}
	if out == nil {
		return next, nil
	}
	return next, json.NewDecoder(resp.Body).Decode(out)
}

// explain turns a failure to reach the registry at base into words that
// say what to do.
func explain(base string, err error) error {
	var op *net.OpError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("the certificate of %s is signed by a CA this machine does not trust: point SSL_CERT_FILE at the CA (for georeg up --tls: georeg-data/tls/ca.pem) or use georeg login --ca-file (%v)", base, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("the certificate of %s is not for that name: %v", base, err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%s serves plain HTTP: use --registry %s", base, strings.Replace(base, "https://", "http://", 1))
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Errorf("no registry answers at %s (%v) — is georeg up, or the region, running?", base, op.Err)
	}
	return err
}

// Replications lists the registry's regions.
func (c *Client) Replications(ctx context.Context) ([]mgmtapi.Replication, error) {
	var out []mgmtapi.Replication
	return out, c.get(ctx, "/_georeg/v1/replications?status=true", &out)
}

// Replication shows one region with its status.
func (c *Client) Replication(ctx context.Context, name string) (*mgmtapi.Replication, error) {
	var out mgmtapi.Replication
	return &out, c.get(ctx, "/_georeg/v1/replications/"+url.PathEscape(name), &out)
}

// PutReplication registers or updates a region; nil fields keep their
// value.
func (c *Client) PutReplication(ctx context.Context, name, endpoint string, enabled *bool) (*mgmtapi.Replication, error) {
	body := map[string]any{}
	if endpoint != "" {
		body["endpoint"] = endpoint
	}
	if enabled != nil {
		body["regionEndpointEnabled"] = *enabled
	}
	var out mgmtapi.Replication
	return &out, c.send(ctx, http.MethodPut, "/_georeg/v1/replications/"+url.PathEscape(name), body, &out)
}

// DeleteReplication removes a registered region; purge also deletes its
// data.
func (c *Client) DeleteReplication(ctx context.Context, name string, purge bool) error {
	path := "/_georeg/v1/replications/" + url.PathEscape(name)
	if purge {
		path += "?purge=true"
	}
	return c.send(ctx, http.MethodDelete, path, nil, nil)
}

// Webhooks lists the registry's webhooks.
func (c *Client) Webhooks(ctx context.Context) ([]webhook.View, error) {
	var out []webhook.View
	return out, c.get(ctx, "/_georeg/v1/webhooks", &out)
}

// Webhook shows one webhook.
func (c *Client) Webhook(ctx context.Context, name string) (*webhook.View, error) {
	var out webhook.View
	return &out, c.get(ctx, webhookPath(name, ""), &out)
}

// CreateWebhook creates a webhook and returns it with its secret.
func (c *Client) CreateWebhook(ctx context.Context, name string, body mgmtapi.WebhookBody) (*mgmtapi.WebhookCreated, error) {
	var out mgmtapi.WebhookCreated
	return &out, c.send(ctx, http.MethodPut, webhookPath(name, ""), body, &out)
}

// UpdateWebhook changes the fields body sets.
func (c *Client) UpdateWebhook(ctx context.Context, name string, body mgmtapi.WebhookBody) (*webhook.View, error) {
	var out webhook.View
	return &out, c.send(ctx, http.MethodPatch, webhookPath(name, ""), body, &out)
}

// DeleteWebhook deletes a webhook.
func (c *Client) DeleteWebhook(ctx context.Context, name string) error {
	return c.send(ctx, http.MethodDelete, webhookPath(name, ""), nil, nil)
}

// WebhookConfig returns a webhook's URI and custom headers.
func (c *Client) WebhookConfig(ctx context.Context, name string) (*mgmtapi.WebhookConfig, error) {
	var out mgmtapi.WebhookConfig
	return &out, c.get(ctx, webhookPath(name, "/config"), &out)
}

// WebhookEvents lists up to n of a webhook's deliveries, newest first,
// from every region it fires in.
func (c *Client) WebhookEvents(ctx context.Context, name string, n int) (*mgmtapi.WebhookEvents, error) {
	var out mgmtapi.WebhookEvents
	return &out, c.get(ctx, webhookPath(name, "/events")+"?n="+strconv.Itoa(n), &out)
}

// PingWebhook sends a ping and reports its outcome.
func (c *Client) PingWebhook(ctx context.Context, name string) (*mgmtapi.PingResult, error) {
	var out mgmtapi.PingResult
	return &out, c.send(ctx, http.MethodPost, webhookPath(name, "/ping"), nil, &out)
}

func webhookPath(name, suffix string) string {
	return "/_georeg/v1/webhooks/" + url.PathEscape(name) + suffix
}

// Do sends a JSON request to a management endpoint and decodes the
// answer into out (nil: discard).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	return c.send(ctx, method, path, body, out)
}
