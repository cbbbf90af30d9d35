package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/metrics"
	"github.com/georeg/georeg/internal/outbound"
)

// Options tune delivery; zero fields take the defaults.
type Options struct {
	// Timeout bounds one attempt, from connect to the end of the answer
	// (default 30 s).
	Timeout time.Duration `yaml:"timeout"`
	// RetryFor is how long an event is retried before it is marked failed
	// (default 24 h).
	RetryFor time.Duration `yaml:"retryFor"`
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from MinBackoff (default 1 s) to MaxBackoff (default 10 min),
	// each drawn between half and all of it (jitter).
	MinBackoff time.Duration `yaml:"minBackoff"`
	MaxBackoff time.Duration `yaml:"maxBackoff"`
	// Keep is how long finished deliveries stay in the log (default 7 days).
	Keep time.Duration `yaml:"keep"`
}

// WithDefaults returns o with zero fields set.
func (o Options) WithDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.RetryFor == 0 {
		o.RetryFor = 24 * time.Hour
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 10 * time.Minute
	}
	if o.Keep == 0 {
		o.Keep = 7 * 24 * time.Hour
	}
	return o
}

// Validate reports every negative or inverted field.
func (o Options) Validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{"timeout": o.Timeout, "retryFor": o.RetryFor,
		"minBackoff": o.MinBackoff, "maxBackoff": o.MaxBackoff, "keep": o.Keep} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s: %s is negative", name, d))
		}
	}
	if o.MinBackoff > 0 && o.MaxBackoff > 0 && o.MinBackoff > o.MaxBackoff {
		errs = append(errs, fmt.Errorf("minBackoff %s is above maxBackoff %s", o.MinBackoff, o.MaxBackoff))
	}
	return errors.Join(errs...)
}

// Outbox is what the deliverer needs of a region (region.Region).
type Outbox interface {
	ClaimDeliveries(ctx context.Context, lease time.Duration, n int) ([]meta.Delivery, error)
	FinishDelivery(ctx context.Context, d meta.Delivery) error
	CancelDelivery(ctx context.Context, id int64) error
	// HoldDelivery puts d back as it is (state and next attempt), its
	// attempt count unchanged: a delivery its disabled webhook keeps.
	HoldDelivery(ctx context.Context, d meta.Delivery) error
	NextDelivery(ctx context.Context) (time.Time, bool, error)
	PruneDeliveries(ctx context.Context, before time.Time) error
	SweepEverywhere(ctx context.Context) error
	// DeliveryWebhook returns the webhook a delivery goes to, or an error
	// for which Gone is true when it was deleted.
	DeliveryWebhook(ctx context.Context, name string) (*Config, error)
	DeliveryWake() <-chan struct{}
}

// Deliverer sends a region's outbox.
type Deliverer struct {
	outbox  Outbox
	gone    func(error) bool
	opts    Options
	http    *http.Client
	log     *slog.Logger
	metrics *metrics.Node // nil: none
}

// SetMetrics has the deliverer count attempts by outcome.
func (d *Deliverer) SetMetrics(m *metrics.Node) { d.metrics = m }

// Deliverer limits.
const (
	batch     = 16               // deliveries claimed at once
	parallel  = 4                // attempts in flight
	idleWait  = 30 * time.Second // longest sleep with nothing due
	bodyLimit = 4 << 10          // what is read of a receiver's answer
)

// NewDeliverer returns a deliverer of outbox; gone tells a deleted
// webhook's error from others.
func NewDeliverer(outbox Outbox, gone func(error) bool, opts Options, log *slog.Logger) *Deliverer {
	opts = opts.WithDefaults()
	return &Deliverer{outbox: outbox, gone: gone, opts: opts, log: log, http: &http.Client{
		Timeout: opts.Timeout,
		// A redirect is an answer, not a delivery: the receiver is told
		// by its status in the log.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// SetTransport makes deliveries (and pings) go through rt: the region's
// outbound policy (internal/outbound).
func (d *Deliverer) SetTransport(rt http.RoundTripper) { d.http.Transport = rt }

// Run sends due deliveries until ctx ends, and every idleWait checks the
// pushes waiting to be everywhere and prunes the log. An attempt cut by the
// end of ctx is not recorded: its lease runs out and it is sent again.
func (d *Deliverer) Run(ctx context.Context) error {
	// An attempt lasts at most Timeout; recording it is one local write.
	// A deliverer killed mid-attempt leaves its claims due after this.
	lease := d.opts.Timeout + 5*time.Second
	sweep := time.Now()
	for {
		if time.Since(sweep) >= idleWait {
			sweep = time.Now()
			if err := d.outbox.SweepEverywhere(ctx); err != nil && ctx.Err() == nil {
				d.log.WarnContext(ctx, "check pushes waiting for replicated-everywhere", "error", err)
			}
			if err := d.outbox.PruneDeliveries(ctx, time.Now().Add(-d.opts.Keep)); err != nil && ctx.Err() == nil {
				d.log.WarnContext(ctx, "prune the webhook delivery log", "error", err)
			}
		}
		// A claim is a write; whether any delivery is due is a read. The
		// deliverer is woken by every push and replicated write, most with
		// nothing to deliver (no webhook, or none for that event), so it
		// claims only when the read finds a delivery due (or fails).
		// The same read then says how long to sleep, read again only after
		// a claim found nothing (another node took what was due).
		next, pending, nerr := d.outbox.NextDelivery(ctx)
		if nerr != nil || (pending && !next.After(time.Now())) {
			due, err := d.outbox.ClaimDeliveries(ctx, lease, batch)
			if err != nil && ctx.Err() == nil {
				d.log.WarnContext(ctx, "read the webhook outbox", "error", err)
			}
			if len(due) > 0 {
				d.sendAll(ctx, due)
				continue
			}
			next, pending, nerr = d.outbox.NextDelivery(ctx)
		}
		wait := idleWait
		if nerr == nil && pending {
			wait = min(max(time.Until(next), 0), idleWait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-d.outbox.DeliveryWake():
		case <-t.C:
		}
		t.Stop()
	}
}

func (d *Deliverer) sendAll(ctx context.Context, due []meta.Delivery) {
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, del := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			d.deliver(ctx, del)
		}()
	}
	wg.Wait()
}

// deliver makes one attempt at del and records it.
func (d *Deliverer) deliver(ctx context.Context, del meta.Delivery) {
	cfg, err := d.outbox.DeliveryWebhook(ctx, del.Webhook)
	if d.gone(err) || (err == nil && cfg.recreatedSince(del)) {
		d.metrics.Delivery(del.Action, meta.DeliveryCanceled, 0)
		if err := d.outbox.CancelDelivery(ctx, del.ID); err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "cancel delivery", "webhook", del.Webhook, "id", del.ID, "error", err)
		}
		return
	}
	if err != nil {
		return // the lease runs out and it is tried again
	}
	if cfg.Status == StatusDisabled {
		// Held, not sent and not dropped: it goes once the webhook is
		// enabled again, unless its retry window ends first.
		del.State, del.Next, del.Updated = meta.DeliveryPending, time.Now().Add(min(idleWait, d.opts.MaxBackoff)), time.Now()
		if time.Since(del.Created) >= d.opts.RetryFor {
			del.State, del.Error = meta.DeliveryFailed, "the webhook was disabled for the whole retry window"
		}
		if err := d.outbox.HoldDelivery(ctx, del); err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "hold delivery", "webhook", del.Webhook, "id", del.ID, "error", err)
		}
		return
	}
	res := d.Send(ctx, cfg, del.Payload)
	if ctx.Err() != nil {
		return
	}
	del.StatusCode, del.Latency, del.Error, del.Updated = res.StatusCode, res.Latency, res.Error, time.Now()
	switch {
	case res.OK():
		del.State = meta.DeliveryDelivered
	case time.Since(del.Created) >= d.opts.RetryFor:
		del.State = meta.DeliveryFailed
		d.log.WarnContext(ctx, "webhook delivery failed for good", "webhook", del.Webhook, "event", del.EventID,
			"action", del.Action, "attempts", del.Attempts+1, "error", res.Error)
	default:
		del.State = meta.DeliveryPending
		del.Next = time.Now().Add(d.backoff(del.Attempts + 1))
	}
	outcome := del.State
	if outcome == meta.DeliveryPending {
		outcome = "retry"
	}
	d.metrics.Delivery(del.Action, outcome, res.Latency)
	if err := d.outbox.FinishDelivery(ctx, del); err != nil && ctx.Err() == nil {
		d.log.WarnContext(ctx, "record delivery", "webhook", del.Webhook, "id", del.ID, "error", err)
	}
}

// recreatedMargin is, for a delivery queued before deliveries named their
// webhook's creation time, how much later than it the webhook's creation
// time must be for the webhook to count as made again: regions' clocks may
// disagree by this much.
const recreatedMargin = time.Minute

// recreatedSince reports whether c was deleted and created again under
// its name after del was queued: the new webhook (a new receiver, a new
// secret) takes none of the old one's deliveries. A delivery names the
// webhook it was queued for by its creation time, which the webhook's
// replicated setting carries unchanged to every region.
func (c *Config) recreatedSince(del meta.Delivery) bool {
	if !del.WebhookCreated.IsZero() {
		return c.Created.UnixMilli() != del.WebhookCreated.UnixMilli() // stored to the millisecond
	}
	return c.Created.After(del.Created.Add(recreatedMargin))
}

// backoff is the wait after the n-th failed attempt: MinBackoff doubling
// up to MaxBackoff, drawn between half and all of it.
func (d *Deliverer) backoff(n int) time.Duration {
	b := d.opts.MinBackoff
	for i := 1; i < n && b < d.opts.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.opts.MaxBackoff)
	return b/2 + rand.N(b/2+1)
}

// Result is the outcome of one attempt.
type Result struct {
	StatusCode int           `json:"statusCode,omitempty"`
	Latency    time.Duration `json:"latencyNs"`
	Error      string        `json:"error,omitempty"`
}

// OK reports a 2xx answer.
func (r Result) OK() bool { return r.StatusCode >= 200 && r.StatusCode < 300 }

// Send posts an event (payload: Event JSON) to cfg's receiver once, in
// cfg's format, signed when cfg has a secret. Errors never quote the URI
// (its query may hold a token) nor any header.
func (d *Deliverer) Send(ctx context.Context, cfg *Config, payload []byte) Result {
	var ev Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return Result{Error: fmt.Sprintf("stored event does not parse: %v", err)}
	}
	body, ctype, err := Body(ev, cfg.Format)
	if err != nil {
		return Result{Error: err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URI, bytes.NewReader(body))
	if err != nil {
		return Result{Error: "the webhook's uri is not usable; update it"}
	}
	for k, v := range cfg.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "georeg-webhook/1")
	req.Header.Set(EventIDHeader, ev.ID)
	req.Header.Set("X-Georeg-Event", ev.Action)
	if cfg.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(cfg.Secret, body))
	}
	start := time.Now()
	resp, err := d.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Result{Latency: time.Since(start), Error: outbound.Trim(err.Error())}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
	res := Result{StatusCode: resp.StatusCode, Latency: time.Since(start)}
	if !res.OK() {
		res.Error = outbound.Trim(fmt.Sprintf("the receiver answered %s: %s", resp.Status, bytes.TrimSpace(answer)))
	}
	return res
}
