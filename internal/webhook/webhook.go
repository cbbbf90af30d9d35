// Package webhook holds the registry's webhooks: their configuration (a
// replicated setting), the events they receive and the JSON those are sent
// as, and the deliverer that sends what a region's outbox holds.
//
// Where an event happens: push and delete in the region the client made the
// change in; replicated in each region a peer's image became complete and
// pullable in; replicated-everywhere in the region that took the push, once
// every Ready region acknowledged the manifest; replication-failed in the
// region whose replication from a peer is stuck. A webhook bound to a
// region (Region set, as `az acr webhook create --location`) fires only for
// events of that region; one without fires for the events of every region,
// each event sent by the region it happened in, so every event is sent
// once.
//
// Delivery: a region writes one outbox row per event and matching webhook
// in the transaction of the change that causes it (meta.Tx.EnqueueDelivery),
// and its deliverer posts it, retrying with exponential backoff and jitter
// until RetryFor has passed (24 h by default), across restarts. Each event
// has an id (the payload's id and the X-Georeg-Event-Id header) that stays
// the same over retries: a receiver that saw it already can drop it. A crash
// between a receiver's 2xx and its record here sends that event again
// (at-least-once); nothing is ever dropped.
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Kind is the setting kind webhooks are stored under.
const Kind = "webhook"

// Actions a webhook can subscribe to.
const (
	ActionPush                 = "push"
	ActionDelete               = "delete"
	ActionReplicated           = "replicated"
	ActionReplicatedEverywhere = "replicated-everywhere"
	ActionReplicationFailed    = "replication-failed"
	// ActionRestore and ActionPurge are soft delete's: a deleted manifest
	// restored, or what was kept of it dropped.
	ActionRestore = "restore"
	ActionPurge   = "purge"
	// ActionPing is sent by `georeg webhook ping` to that webhook only.
	ActionPing = "ping"
)

// Actions lists the actions a webhook can subscribe to.
var Actions = []string{ActionPush, ActionDelete, ActionReplicated, ActionReplicatedEverywhere, ActionReplicationFailed, ActionRestore, ActionPurge}

// Payload formats.
const (
	FormatACR         = "acr"         // ACR's webhook JSON, plus region and origin
	FormatCloudEvents = "cloudevents" // a CloudEvents 1.0 structured event whose data is the ACR JSON
)

// Statuses.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// Config is a webhook as stored (the value of its setting). Secret and
// Headers are credentials: Config.View leaves them out.
type Config struct {
	URI     string            `json:"serviceUri"`
	Actions []string          `json:"actions"`
	Scope   string            `json:"scope,omitempty"`
	Headers map[string]string `json:"customHeaders,omitempty"`
	Status  string            `json:"status"`
	Region  string            `json:"location,omitempty"` // empty: every region
	Format  string            `json:"format"`
	Secret  string            `json:"secret,omitempty"` // HMAC-SHA256 key of the signature header
	Created time.Time         `json:"created"`
}

var nameRegexp = regexp.MustCompile(`^[a-zA-Z0-9]{5,50}$`)

// ValidateName checks a webhook name: 5 to 50 letters and digits, as ACR.
func ValidateName(name string) error {
	if !nameRegexp.MatchString(name) {
		return fmt.Errorf("webhook name %q: use 5 to 50 letters and digits", name)
	}
	return nil
}

var regionRegexp = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// reservedHeaders are set by the deliverer and cannot be customized.
var reservedHeaders = []string{"Content-Type", "Content-Length", "Host", "User-Agent", "Transfer-Encoding", "Connection"}

// Validate reports every problem in c, each naming its field, with
// defaults (status enabled, format acr) applied first.
func (c *Config) Validate() error {
	if c.Status == "" {
		c.Status = StatusEnabled
	}
	if c.Format == "" {
		c.Format = FormatACR
	}
	var errs []error
	u, err := url.Parse(c.URI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("uri %q: give an absolute http(s) URL", c.URI))
	} else if u.User != nil {
		errs = append(errs, errors.New("uri: do not put credentials in the URL; send them as a custom header"))
	}
	if len(c.Actions) == 0 {
		errs = append(errs, fmt.Errorf("actions: give at least one of %s", strings.Join(Actions, ", ")))
	}
	seen := map[string]bool{}
	for _, a := range c.Actions {
		if !slices.Contains(Actions, a) {
			errs = append(errs, fmt.Errorf("actions: %q is not one of %s", a, strings.Join(Actions, ", ")))
		}
		if seen[a] {
			errs = append(errs, fmt.Errorf("actions: %q twice", a))
		}
		seen[a] = true
	}
	if _, err := ParseScope(c.Scope); err != nil {
		errs = append(errs, err)
	}
	for k, v := range c.Headers {
		switch {
		case k == "" || strings.ContainsAny(k, " :\r\n\t") || http.CanonicalHeaderKey(k) != http.CanonicalHeaderKey(strings.TrimSpace(k)):
			errs = append(errs, fmt.Errorf("customHeaders: %q is not a header name", k))
		case slices.Contains(reservedHeaders, http.CanonicalHeaderKey(k)) || strings.HasPrefix(http.CanonicalHeaderKey(k), "X-Georeg-"):
			errs = append(errs, fmt.Errorf("customHeaders: %s is set by the registry", k))
		case strings.ContainsAny(v, "\r\n"):
			errs = append(errs, fmt.Errorf("customHeaders: the value of %s has a line break", k))
		}
	}
	if c.Status != StatusEnabled && c.Status != StatusDisabled {
		errs = append(errs, fmt.Errorf("status %q: enabled or disabled", c.Status))
	}
	if c.Region != "" && !regionRegexp.MatchString(c.Region) {
		errs = append(errs, fmt.Errorf("location %q: a region name (lower-case letters, digits and '-')", c.Region))
	}
	if c.Format != FormatACR && c.Format != FormatCloudEvents {
		errs = append(errs, fmt.Errorf("format %q: %s or %s", c.Format, FormatACR, FormatCloudEvents))
	}
	if len(c.Secret) > 256 {
		errs = append(errs, errors.New("secret: at most 256 characters"))
	}
	return errors.Join(errs...)
}

// Wants reports whether c subscribes to an event of action on repo:tag
// that happened in region.
func (c *Config) Wants(action, repo, tag, region string) bool {
	if c.Status != StatusEnabled || !slices.Contains(c.Actions, action) {
		return false
	}
	if c.Region != "" && c.Region != region {
		return false
	}
	s, err := ParseScope(c.Scope)
	return err == nil && s.Matches(repo, tag)
}

// View is a webhook as `show` and `list` print it: no secret, and only
// the names of its custom headers.
type View struct {
	Name          string    `json:"name"`
	URI           string    `json:"serviceUri"`
	Actions       []string  `json:"actions"`
	Scope         string    `json:"scope"`
	Status        string    `json:"status"`
	Location      string    `json:"location"`
	Format        string    `json:"format"`
	CustomHeaders []string  `json:"customHeaderNames,omitempty"`
	Signed        bool      `json:"signed"` // has a secret
	Created       time.Time `json:"created"`
}

// View returns what may be shown of c.
func (c *Config) View(name string) View {
	v := View{Name: name, URI: redactURI(c.URI), Actions: c.Actions, Scope: c.Scope, Status: c.Status,
		Location: c.Region, Format: c.Format, Signed: c.Secret != "", Created: c.Created}
	for k := range c.Headers {
		v.CustomHeaders = append(v.CustomHeaders, k)
	}
	slices.Sort(v.CustomHeaders)
	return v
}

// redactURI drops the query of uri, where receivers often take a token.
func redactURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.RawQuery == "" {
		return uri
	}
	u.RawQuery = "redacted"
	return u.String()
}

// Parse reads a stored webhook.
func Parse(value []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(value, &c); err != nil {
		return nil, fmt.Errorf("webhook setting: %w", err)
	}
	return &c, nil
}
