package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/webhook"
)

// outboxRegion opens a region with webhook name pointing at uri and one
// push queued for it.
func outboxRegion(t *testing.T, name, uri string) *region.Region {
	t.Helper()
	r := openRegion(t)
	queuePush(t, r, name, uri)
	return r
}

// openRegion opens a region with no webhook.
func openRegion(t *testing.T) *region.Region {
	t.Helper()
	r, err := region.Open(t.Context(), region.Config{Name: "eastus", DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// queuePush adds webhook name pointing at uri to r and pushes an image,
// which queues a delivery for it.
func queuePush(t *testing.T, r *region.Region, name, uri string) {
	t.Helper()
	putWebhook(t, r, name, webhook.Config{URI: uri, Actions: []string{webhook.ActionPush}, Created: time.Now().UTC()})
	layer := []byte("a layer")
	if _, err := r.PutBlob(t.Context(), "app", digest.FromBytes(layer), int64(len(layer)), bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`,
		digest.FromBytes(layer), len(layer))
	if _, err := r.PutManifest(t.Context(), "app", "v1", "application/vnd.oci.image.manifest.v1+json", []byte(m)); err != nil {
		t.Fatal(err)
	}
}

func putWebhook(t *testing.T, r *region.Region, name string, c webhook.Config) {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	if _, err := r.PutSetting(t.Context(), webhook.Kind, name, b); err != nil {
		t.Fatal(err)
	}
}

// deliverUntil runs a deliverer of r until name's only delivery is in
// state, and returns it.
func deliverUntil(t *testing.T, r *region.Region, opts webhook.Options, name, state string) meta.Delivery {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	d := webhook.NewDeliverer(r, func(err error) bool { return errors.Is(err, region.ErrNoWebhook) }, opts, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		dels, err := r.Deliveries(t.Context(), name, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dels) != 1 {
			t.Fatalf("%d deliveries queued, want 1", len(dels))
		}
		if dels[0].State == state {
			return dels[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery still %s after 20 s (attempts %d, error %q), want %s", dels[0].State, dels[0].Attempts, dels[0].Error, state)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
}

// TestADeliveryIsRetriedForItsWindowThenFails: a receiver that always
// answers 500 gets the event again and again, with backoff, until the
// retry window ends; then the delivery is failed and left alone.
func TestADeliveryIsRetriedForItsWindowThenFails(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hits.Add(1)
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
	}))
	defer srv.Close()
	r := outboxRegion(t, "failing", srv.URL)
	del := deliverUntil(t, r, webhook.Options{RetryFor: 400 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}, "failing", meta.DeliveryFailed)
	if del.Attempts < 2 || del.StatusCode != 500 || del.Error == "" {
		t.Fatalf("failed after %d attempts, status %d, error %q: want retries and the last answer", del.Attempts, del.StatusCode, del.Error)
	}
	if n := hits.Load(); int(n) != del.Attempts {
		t.Fatalf("the receiver was called %d times, the log counts %d attempts", n, del.Attempts)
	}
}

// TestADisabledWebhookHoldsItsDeliveriesAndARecreatedOneGetsNone: a
// delivery queued before its webhook was disabled is held, not sent, and
// goes once the webhook is enabled again; one queued before the webhook
// was deleted and created again under its name is canceled, never sent.
func TestADisabledWebhookHoldsItsDeliveriesAndARecreatedOneGetsNone(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	// A 2 s attempt timeout: a claim the first deliverer held when it was
	// stopped runs out (Timeout + 5 s) well within deliverUntil's 20 s.
	fast := webhook.Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Timeout: 2 * time.Second}
	t.Run("disabled, then enabled", func(t *testing.T) {
		r := outboxRegion(t, "disabled", srv.URL)
		current, err := r.Webhook(t.Context(), "disabled")
		if err != nil {
			t.Fatal(err)
		}
		hook := *current // the same webhook, updated: its creation time stays
		hook.Status = webhook.StatusDisabled
		putWebhook(t, r, "disabled", hook)
		ctx, cancel := context.WithCancel(t.Context())
		d := webhook.NewDeliverer(r, func(err error) bool { return errors.Is(err, region.ErrNoWebhook) }, fast, slog.New(slog.DiscardHandler))
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		// Held over several rounds of the deliverer, never sent.
		deadline := time.Now().Add(20 * time.Second)
		for {
			dels, err := r.Deliveries(t.Context(), "disabled", 10)
			if err != nil || len(dels) != 1 {
				t.Fatalf("deliveries %v %v", dels, err)
			}
			if dels[0].State != meta.DeliveryPending || dels[0].Attempts != 0 {
				t.Fatalf("a disabled webhook's delivery is %s after %d attempts", dels[0].State, dels[0].Attempts)
			}
			if dels[0].Updated.After(dels[0].Created) {
				break // the deliverer looked at it and put it back
			}
			if time.Now().After(deadline) {
				t.Fatal("the deliverer never looked at the held delivery")
			}
			time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
		}
		cancel()
		<-done
		if n := hits.Swap(0); n != 0 {
			t.Fatalf("a disabled webhook got %d deliveries", n)
		}
		hook.Status = webhook.StatusEnabled
		putWebhook(t, r, "disabled", hook)
		// Due again within a bounded hold: idleWait caps it at 30 s.
		deliverUntil(t, r, fast, "disabled", meta.DeliveryDelivered)
		if n := hits.Swap(0); n != 1 {
			t.Fatalf("enabled again, the receiver got %d deliveries, want 1", n)
		}
	})
	t.Run("deleted and created again", func(t *testing.T) {
		r := outboxRegion(t, "recreated", srv.URL)
		// Made again a moment later: its creation time is its own.
		putWebhook(t, r, "recreated", webhook.Config{URI: srv.URL, Actions: []string{webhook.ActionPush}, Created: time.Now().Add(time.Second).UTC()})
		deliverUntil(t, r, webhook.Options{}, "recreated", meta.DeliveryCanceled)
		if n := hits.Load(); n != 0 {
			t.Fatalf("the new webhook got %d of the old one's deliveries", n)
		}
	})
}

// countingOutbox counts the deliverer's claims of r's outbox, and is
// woken by the test.
type countingOutbox struct {
	*region.Region
	claims atomic.Int32
	wake   chan struct{}
}

func (o *countingOutbox) ClaimDeliveries(ctx context.Context, lease time.Duration, n int) ([]meta.Delivery, error) {
	o.claims.Add(1)
	return o.Region.ClaimDeliveries(ctx, lease, n)
}

func (o *countingOutbox) DeliveryWake() <-chan struct{} { return o.wake }

// TestADelivererWithNothingDueClaimsNothing: a claim is a write (on
// PostgreSQL one of a scope every node's deliverer shares) and every
// push wakes the deliverer, so it asks whether a delivery is due with a
// read and claims only then: woken 20 times with no webhook, it claims
// nothing; with a push queued for a webhook, it claims and delivers it.
func TestADelivererWithNothingDueClaimsNothing(t *testing.T) {
	r := openRegion(t)
	o := &countingOutbox{Region: r, wake: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	d := webhook.NewDeliverer(o, func(err error) bool { return errors.Is(err, region.ErrNoWebhook) }, webhook.Options{}, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wake := func() {
		select {
		case o.wake <- struct{}{}: // taken once the deliverer is back waiting
		case <-time.After(10 * time.Second):
			t.Fatal("the deliverer did not come back to wait within 10 s")
		}
	}
	for range 20 {
		wake()
	}
	if n := o.claims.Load(); n != 0 {
		t.Fatalf("woken 20 times with nothing due, the deliverer claimed %d times", n)
	}

	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hits.Add(1)
	}))
	defer srv.Close()
	queuePush(t, r, "hook", srv.URL)
	wake()
	for deadline := time.Now().Add(10 * time.Second); hits.Load() == 0; time.Sleep(20 * time.Millisecond) { // poll of a bounded wait
		if time.Now().After(deadline) {
			t.Fatalf("the queued push was not delivered within 10 s (%d claims)", o.claims.Load())
		}
	}
	if o.claims.Load() == 0 {
		t.Fatal("delivered without a claim")
	}
}
