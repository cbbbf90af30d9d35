package mgmtapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/webhook"
)

// Webhooks, mirroring `az acr webhook`. They are settings: any region
// creates, changes or deletes one, and every region has it within seconds.
//
//	GET    /_georeg/v1/webhooks                    list
//	PUT    /_georeg/v1/webhooks/{name}             create (ALREADY_EXISTS if it does)
//	PATCH  /_georeg/v1/webhooks/{name}             update the fields given
//	GET    /_georeg/v1/webhooks/{name}             show
//	DELETE /_georeg/v1/webhooks/{name}             delete (pending deliveries are canceled)
//	GET    /_georeg/v1/webhooks/{name}/config      get-config: serviceUri and customHeaders
//	GET    /_georeg/v1/webhooks/{name}/events      list-events: the delivery log of every region it fires in
//	POST   /_georeg/v1/webhooks/{name}/ping        send a ping from this region and report the answer

func (a *API) registerWebhooks(mux *http.ServeMux) {
	mux.HandleFunc("GET /_georeg/v1/webhooks", a.handle(a.listWebhooks))
	mux.HandleFunc("PUT /_georeg/v1/webhooks/{name}", a.handle(a.createWebhook))
	mux.HandleFunc("PATCH /_georeg/v1/webhooks/{name}", a.handle(a.updateWebhook))
	mux.HandleFunc("GET /_georeg/v1/webhooks/{name}", a.handle(a.showWebhook))
	mux.HandleFunc("DELETE /_georeg/v1/webhooks/{name}", a.handle(a.deleteWebhook))
	mux.HandleFunc("GET /_georeg/v1/webhooks/{name}/config", a.handle(a.webhookConfig))
	mux.HandleFunc("GET /_georeg/v1/webhooks/{name}/events", a.handle(a.webhookEvents))
	mux.HandleFunc("POST /_georeg/v1/webhooks/{name}/ping", a.handle(a.pingWebhook))
}

// WebhookBody is what create and update take; on update, absent fields
// keep their value (customHeaders, when given, replaces every header).
type WebhookBody struct {
	URI      *string           `json:"serviceUri,omitempty"`
	Actions  []string          `json:"actions,omitempty"`
	Scope    *string           `json:"scope,omitempty"`
	Headers  map[string]string `json:"customHeaders,omitempty"`
	Status   *string           `json:"status,omitempty"`
	Location *string           `json:"location,omitempty"`
	Format   *string           `json:"format,omitempty"`
	Secret   *string           `json:"secret,omitempty"` // "" on update: remove; absent on create: generated
}

// WebhookCreated answers a create: the webhook and, once, its secret.
type WebhookCreated struct {
	webhook.View
	Secret string `json:"secret,omitempty"`
}

// WebhookConfig answers get-config.
type WebhookConfig struct {
	URI     string            `json:"serviceUri"`
	Headers map[string]string `json:"customHeaders"`
}

// WebhookEvent is one delivery in a webhook's log, with the region that
// made it.
type WebhookEvent struct {
	Region string `json:"region"`
	meta.Delivery
	Event json.RawMessage `json:"event,omitempty"`
}

// WebhookEvents answers list-events: newest first.
type WebhookEvents struct {
	Events      []WebhookEvent `json:"events"`
	Unreachable []string       `json:"unreachable,omitempty"` // regions whose log could not be read
}

// PingResult answers a ping.
type PingResult struct {
	EventID    string `json:"eventId"`
	Region     string `json:"region"`
	State      string `json:"state"` // delivered, or pending (it failed and will be retried)
	StatusCode int    `json:"statusCode,omitempty"`
	LatencyMs  int64  `json:"latencyMs"`
	Error      string `json:"error,omitempty"`
}

// webhookHint is what a bad webhook body is told to send.
const webhookHint = "JSON with serviceUri, actions, scope, customHeaders, status, location, format, secret"

func (a *API) webhookName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := webhook.ValidateName(name); err != nil {
		return "", ocierr.RequestInvalid.Withf("%v", err)
	}
	return name, nil
}

func (a *API) listWebhooks(ctx context.Context, _ *http.Request) (any, error) {
	settings, err := a.region.Settings(ctx, webhook.Kind)
	if err != nil {
		return nil, err
	}
	out := []webhook.View{}
	for _, s := range settings {
		if c, err := webhook.Parse(s.Value); err == nil {
			out = append(out, c.View(s.Name))
		}
	}
	return out, nil
}

func (a *API) showWebhook(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.webhookName(r)
	if err != nil {
		return nil, err
	}
	c, err := a.region.Webhook(ctx, name)
	if err != nil {
		return nil, err
	}
	return c.View(name), nil
}

func (a *API) createWebhook(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.webhookName(r)
	if err != nil {
		return nil, err
	}
	var body WebhookBody
	if err := decode(r, &body, webhookHint); err != nil {
		return nil, err
	}
	if _, err := a.region.Webhook(ctx, name); err == nil {
		return nil, ocierr.AlreadyExists.Withf("webhook %s exists; change it with PATCH (georeg webhook update) or delete it first", name)
	}
	c := &webhook.Config{Created: time.Now().UTC()}
	if body.Secret == nil {
		var b [32]byte
		_, _ = rand.Read(b[:])
		secret := hex.EncodeToString(b[:])
		body.Secret = &secret
	}
	if err := a.saveWebhook(ctx, name, c, body); err != nil {
		return nil, err
	}
	return WebhookCreated{View: c.View(name), Secret: c.Secret}, nil
}

func (a *API) updateWebhook(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.webhookName(r)
	if err != nil {
		return nil, err
	}
	var body WebhookBody
	if err := decode(r, &body, webhookHint); err != nil {
		return nil, err
	}
	c, err := a.region.Webhook(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := a.saveWebhook(ctx, name, c, body); err != nil {
		return nil, err
	}
	return c.View(name), nil
}

// saveWebhook applies body to c, validates and stores it.
func (a *API) saveWebhook(ctx context.Context, name string, c *webhook.Config, body WebhookBody) error {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&c.URI, body.URI)
	set(&c.Scope, body.Scope)
	set(&c.Status, body.Status)
	set(&c.Region, body.Location)
	set(&c.Format, body.Format)
	set(&c.Secret, body.Secret)
	if body.Actions != nil {
		c.Actions = body.Actions
	}
	if body.Headers != nil {
		c.Headers = body.Headers
	}
	if err := c.Validate(); err != nil {
		return ocierr.RequestInvalid.Withf("webhook %s: %s", name, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if c.Region != "" {
		if err := a.knownRegion(ctx, c.Region); err != nil {
			return err
		}
	}
	value, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = a.region.PutSetting(ctx, webhook.Kind, name, value)
	return err
}

func (a *API) knownRegion(ctx context.Context, name string) error {
	all, err := a.replications(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, r := range all {
		if r.Name == name {
			return nil
		}
		names = append(names, r.Name)
	}
	return ocierr.RequestInvalid.Withf("location %q is not a region of this registry; use one of %s", name, strings.Join(names, ", "))
}

func (a *API) deleteWebhook(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.webhookName(r)
	if err != nil {
		return nil, err
	}
	if _, err := a.region.DeleteSetting(ctx, webhook.Kind, name); err != nil {
		return nil, err
	}
	return map[string]string{"deleted": name}, nil
}

func (a *API) webhookConfig(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.webhookName(r)
	if err != nil {
		return nil, err
	}
	c, err := a.region.Webhook(ctx, name)
	if err != nil {
		return nil, err
	}
	out := WebhookConfig{URI: c.URI, Headers: c.Headers}
	if out.Headers == nil {
		out.Headers = map[string]string{}
	}
	return out, nil
}

// webhookEvents lists the webhook's deliveries: this region's own with
// local=true, else those of every region, asked of each.
func (a *API) webhookEvents(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.webhookName(r)
	if err != nil {
		return nil, err
	}
	n := 100
	if s := r.URL.Query().Get("n"); s != "" {
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > 1000 {
			return nil, ocierr.PaginationNumberInvalid.Withf("n=%q: give 1 to 1000", s)
		}
	}
	if _, err := a.region.Webhook(ctx, name); err != nil {
		return nil, err
	}
	if r.URL.Query().Get("local") == "true" {
		return a.localEvents(ctx, name, n)
	}
	all, err := a.replications(ctx)
	if err != nil {
		return nil, err
	}
	// Every region is asked, also for a webhook bound to one: a ping is
	// sent, and logged, by whichever region took it.
	out := WebhookEvents{Events: []WebhookEvent{}}
	for _, rep := range all {
		var got *WebhookEvents
		if rep.Name == a.region.Name() {
			got, err = a.localEvents(ctx, name, n)
		} else {
			got, err = a.remoteEvents(ctx, rep.Name, rep.Endpoint, name, n)
		}
		if err != nil {
			out.Unreachable = append(out.Unreachable, rep.Name)
			continue
		}
		out.Events = append(out.Events, got.Events...)
	}
	sort.SliceStable(out.Events, func(i, j int) bool { return out.Events[i].Created.After(out.Events[j].Created) })
	if len(out.Events) > n {
		out.Events = out.Events[:n]
	}
	return out, nil
}

func (a *API) localEvents(ctx context.Context, name string, n int) (*WebhookEvents, error) {
	ds, err := a.region.Deliveries(ctx, name, n)
	if err != nil {
		return nil, err
	}
	out := &WebhookEvents{Events: []WebhookEvent{}}
	for _, d := range ds {
		out.Events = append(out.Events, WebhookEvent{Region: a.region.Name(), Delivery: d, Event: d.Payload})
	}
	return out, nil
}

// remoteEvents reads another region's own delivery log of a webhook.
func (a *API) remoteEvents(ctx context.Context, region, endpoint, name string, n int) (*WebhookEvents, error) {
	var out WebhookEvents
	return &out, a.peerGet(ctx, region, endpoint, fmt.Sprintf("/_georeg/v1/webhooks/%s/events?local=true&n=%d", url.PathEscape(name), n), 16<<20, &out)
}

// pingWait bounds how long a ping waits for its attempt.
const pingWait = 45 * time.Second

// pingWebhook sends a ping event through this region's outbox and reports
// the first attempt's outcome.
func (a *API) pingWebhook(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.webhookName(r)
	if err != nil {
		return nil, err
	}
	id, err := a.region.Ping(ctx, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, pingWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		d, err := a.region.Delivery(ctx, id)
		if err != nil {
			return nil, err
		}
		if d.Attempts > 0 || d.State != meta.DeliveryPending {
			return PingResult{EventID: d.EventID, Region: a.region.Name(), State: d.State, StatusCode: d.StatusCode,
				LatencyMs: d.Latency.Milliseconds(), Error: d.Error}, nil
		}
		select {
		case <-ctx.Done():
			return nil, ocierr.Unknown.Withf("the ping (event %s) was not attempted within %s; see georeg webhook list-events %s", d.EventID, pingWait, name)
		case <-tick.C:
		}
	}
}
