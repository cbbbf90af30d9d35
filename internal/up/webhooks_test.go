package up_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/up"
	"github.com/georeg/georeg/internal/webhook"
)

// fastWebhooks retries quickly, so an outage of seconds heals in seconds.
var fastWebhooks = webhook.Options{Timeout: 5 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond}

// received is one delivery a receiver took.
type received struct {
	event  webhook.Event
	signed bool  // the signature header verified
	pulled error // for replicated events: pulling the image in the event's region, before answering
}

// receiver is a webhook receiver on 127.0.0.1: it records every event and,
// for a replicated event, pulls the image from the region the event names
// before it answers.
type receiver struct {
	reg    *up.Registry
	secret string
	srv    *http.Server
	addr   string
	done   chan struct{}

	mu  sync.Mutex
	got []received
}

// startReceiver serves on l (a fresh port when nil).
func startReceiver(t *testing.T, reg *up.Registry, l net.Listener) *receiver {
	t.Helper()
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	rc := &receiver{reg: reg, addr: l.Addr().String(), done: make(chan struct{})}
	rc.srv = &http.Server{Handler: http.HandlerFunc(rc.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { defer close(rc.done); _ = rc.srv.Serve(l) }()
	t.Cleanup(rc.stop)
	return rc
}

func (rc *receiver) stop() {
	_ = rc.srv.Close()
	<-rc.done
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var rec received
	if err := json.Unmarshal(body, &rec.event); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	secret := rc.secret
	rc.mu.Unlock()
	rec.signed = webhook.Verify(secret, body, r.Header.Get(webhook.SignatureHeader)) && r.Header.Get(webhook.EventIDHeader) == rec.event.ID
	switch rec.event.Action {
	case webhook.ActionReplicated:
		rec.pulled = rc.pull(rec.event)
	case webhook.ActionReplicatedEverywhere:
		// Everywhere means pullable by its tag in every region now.
		for _, r := range rc.reg.Regions {
			ev := rec.event
			ev.Region = r.Name
			if err := rc.pull(ev); err != nil {
				rec.pulled = errors.Join(rec.pulled, err)
			}
		}
	}
	rc.mu.Lock()
	rc.got = append(rc.got, rec)
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// pull pulls the event's image from its region, by tag when it has one:
// the manifest, then every blob, each verified.
func (rc *receiver) pull(ev webhook.Event) error {
	region, ok := rc.reg.ByName[ev.Region]
	if !ok {
		return fmt.Errorf("event from unknown region %q", ev.Region)
	}
	ref := ev.Target.Tag
	if ref == "" {
		ref = ev.Target.Digest
	}
	base := region.URL + "/v2/" + ev.Target.Repository
	req, _ := http.NewRequest(http.MethodGet, base+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || digest.FromBytes(m).String() != ev.Target.Digest {
		return fmt.Errorf("GET %s:%s in %s: %d %s", ev.Target.Repository, ref, ev.Region, resp.StatusCode, m)
	}
	var parsed struct {
		Config struct{ Digest digest.Digest }
		Layers []struct{ Digest digest.Digest }
	}
	_ = json.Unmarshal(m, &parsed)
	for _, d := range append([]digest.Digest{parsed.Config.Digest}, func() (ds []digest.Digest) {
		for _, l := range parsed.Layers {
			ds = append(ds, l.Digest)
		}
		return
	}()...) {
		resp, err := http.Get(base + "/blobs/" + d.String())
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || digest.FromBytes(b) != d {
			return fmt.Errorf("blob %s in %s: %d", d, ev.Region, resp.StatusCode)
		}
	}
	return nil
}

// events returns what arrived so far.
func (rc *receiver) events() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// count returns how many arrived of action from region ("" for any).
func (rc *receiver) count(action, region string) int {
	n := 0
	for _, r := range rc.events() {
		if r.event.Action == action && (region == "" || r.event.Region == region) {
			n++
		}
	}
	return n
}

// createWebhook creates a webhook through base's API and waits until
// every region has it; the receiver learns its secret.
func createWebhook(t *testing.T, reg *up.Registry, base, name string, body mgmtapi.WebhookBody, rc *receiver) {
	t.Helper()
	b, _ := json.Marshal(body)
	code, _, out := do(t, http.MethodPut, base+"/_georeg/v1/webhooks/"+name, "application/json", b)
	if code != 200 {
		t.Fatalf("create webhook: %d %s", code, out)
	}
	var created mgmtapi.WebhookCreated
	if err := json.Unmarshal(out, &created); err != nil || created.Secret == "" {
		t.Fatalf("create answered %s (%v)", out, err)
	}
	if rc != nil {
		rc.mu.Lock()
		rc.secret = created.Secret
		rc.mu.Unlock()
	}
	for _, r := range reg.Regions {
		eventually(t, 10*time.Second, func() error {
			if code, _, _ := do(t, http.MethodGet, r.URL+"/_georeg/v1/webhooks/"+name, "", nil); code != 200 {
				return fmt.Errorf("%s does not have webhook %s yet (%d)", r.Name, name, code)
			}
			return nil
		})
	}
}

// deliveries lists a webhook's deliveries in every region, through base.
func deliveries(t *testing.T, base, name string) mgmtapi.WebhookEvents {
	t.Helper()
	code, _, out := do(t, http.MethodGet, base+"/_georeg/v1/webhooks/"+name+"/events?n=1000", "", nil)
	var evs mgmtapi.WebhookEvents
	if code != 200 || json.Unmarshal(out, &evs) != nil {
		t.Fatalf("list-events: %d %s", code, out)
	}
	return evs
}

// allDelivered waits until no region has a pending delivery of name and
// returns the log.
func allDelivered(t *testing.T, base, name string, want int) mgmtapi.WebhookEvents {
	t.Helper()
	var evs mgmtapi.WebhookEvents
	eventually(t, 30*time.Second, func() error {
		evs = deliveries(t, base, name)
		if len(evs.Unreachable) > 0 {
			return fmt.Errorf("unreachable: %v", evs.Unreachable)
		}
		delivered := 0
		for _, e := range evs.Events {
			if e.State == "delivered" {
				delivered++
			}
		}
		if delivered != want || len(evs.Events) != want {
			return fmt.Errorf("%d of %d deliveries done, %d in the log", delivered, want, len(evs.Events))
		}
		return nil
	})
	return evs
}

func noReadThrough(reg ...string) map[string]bool {
	out := map[string]bool{}
	for _, r := range reg {
		out[r] = true
	}
	return out
}

// TestWebhooksFireWhereEachEventHappens: a push to eastus fires push in
// eastus, replicated in westeurope and southeastasia (where the receiver's
// pull in that region, made before it answers, succeeds: read-through is
// off, so only what arrived can be pulled), replicated-everywhere once,
// and a delete in westeurope fires delete there. Every body is signed.
func TestWebhooksFireWhereEachEventHappens(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), Webhooks: fastWebhooks,
		NoReadThrough: noReadThrough("eastus", "westeurope", "southeastasia")})
	rc := startReceiver(t, reg, nil)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	createWebhook(t, reg, west, "allevents", mgmtapi.WebhookBody{URI: ptr(receiverURL(rc)),
		Actions: []string{"push", "replicated", "replicated-everywhere", "delete"}, Scope: ptr("app:*")}, rc)

	img := push(t, east, "app", "v1", "hooks", 100<<10)
	push(t, east, "other", "v1", "out of scope", 1<<10)
	eventually(t, 30*time.Second, func() error {
		if rc.count("push", "eastus") != 1 || rc.count("replicated", "westeurope") != 1 ||
			rc.count("replicated", "southeastasia") != 1 || rc.count("replicated-everywhere", "eastus") != 1 {
			return fmt.Errorf("events so far: %v", summary(rc.events()))
		}
		return nil
	})
	for _, r := range rc.events() {
		ev := r.event
		if !r.signed {
			t.Errorf("%s from %s: signature does not verify", ev.Action, ev.Region)
		}
		if ev.Target.Repository != "app" || ev.Target.Digest != img.manifest.String() || ev.Target.Tag != "v1" || ev.Target.Size == 0 || ev.Target.MediaType == "" {
			t.Errorf("%s from %s: target %+v", ev.Action, ev.Region, ev.Target)
		}
		if ev.Action == "replicated-everywhere" && r.pulled != nil {
			t.Errorf("replicated-everywhere arrived before the image could be pulled by its tag in every region: %v", r.pulled)
		}
		if ev.Action == "replicated" {
			if r.pulled != nil {
				t.Errorf("replicated in %s arrived before the image could be pulled there: %v", ev.Region, r.pulled)
			}
			if ev.Origin != "eastus" {
				t.Errorf("replicated in %s names origin %q", ev.Region, ev.Origin)
			}
		}
		if ev.Action == "push" && (ev.Request.Method != "PUT" || ev.Request.ID == "") {
			t.Errorf("push names request %+v", ev.Request)
		}
	}
	// Every region has sent what it had: nothing more is on its way, so
	// replicated-everywhere came exactly once.
	allDelivered(t, east, "allevents", 4)
	if n := rc.count("replicated-everywhere", ""); n != 1 {
		t.Fatalf("replicated-everywhere arrived %d times", n)
	}

	if code, _, body := do(t, http.MethodDelete, west+"/v2/app/manifests/v1", "", nil); code != 202 {
		t.Fatalf("delete: %d %s", code, body)
	}
	eventually(t, 10*time.Second, func() error {
		if rc.count("delete", "westeurope") != 1 {
			return fmt.Errorf("events so far: %v", summary(rc.events()))
		}
		return nil
	})
	allDelivered(t, east, "allevents", 5)
	if len(rc.events()) != 5 {
		t.Fatalf("the receiver got %d events, want 5: %v", len(rc.events()), summary(rc.events()))
	}
}

func receiverURL(rc *receiver) string { return "http://" + rc.addr + "/hook" }

func ptr[T any](v T) *T { return &v }

func summary(rs []received) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.event.Action+"@"+r.event.Region+":"+r.event.Target.Repository+":"+r.event.Target.Tag)
	}
	return out
}

// TestWebhookEventsSurviveAReceiverOutage: events fired while the receiver
// is down (its port closed) are retried until it is back; then every one
// arrives, and none twice.
func TestWebhookEventsSurviveAReceiverOutage(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), Webhooks: fastWebhooks})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // down: connections are refused
	east := reg.ByName["eastus"].URL
	b, _ := json.Marshal(mgmtapi.WebhookBody{URI: ptr("http://" + addr + "/hook"), Actions: []string{"push", "replicated"}})
	if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/webhooks/outagehook", "application/json", b); code != 200 {
		t.Fatalf("create: %d %s", code, out)
	}
	for _, r := range reg.Regions {
		eventually(t, 10*time.Second, func() error {
			if code, _, _ := do(t, http.MethodGet, r.URL+"/_georeg/v1/webhooks/outagehook", "", nil); code != 200 {
				return fmt.Errorf("%s lacks the webhook", r.Name)
			}
			return nil
		})
	}
	const images = 5
	for i := range images {
		push(t, east, "outage", fmt.Sprintf("v%d", i), fmt.Sprintf("outage %d", i), 2<<10)
	}
	want := images * 3 // push in eastus, replicated in the two others
	// Every event has been tried and refused at least twice.
	eventually(t, 30*time.Second, func() error {
		evs := deliveries(t, east, "outagehook")
		if len(evs.Events) != want {
			return fmt.Errorf("%d events in the log, want %d", len(evs.Events), want)
		}
		for _, e := range evs.Events {
			if e.State != "pending" || e.Attempts < 2 || e.Error == "" {
				return fmt.Errorf("%s in %s: %s after %d attempts (%s)", e.Action, e.Region, e.State, e.Attempts, e.Error)
			}
		}
		return nil
	})
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the receiver cannot come back on %s: %v", addr, err)
	}
	rc := startReceiver(t, reg, l)
	allDelivered(t, east, "outagehook", want)
	got := rc.events()
	seen := map[string]bool{}
	for _, r := range got {
		if seen[r.event.ID] {
			t.Errorf("event %s (%s in %s) arrived twice", r.event.ID, r.event.Action, r.event.Region)
		}
		seen[r.event.ID] = true
	}
	if len(got) != want || rc.count("push", "eastus") != images || rc.count("replicated", "westeurope") != images || rc.count("replicated", "southeastasia") != images {
		t.Fatalf("after the outage the receiver got %d events, want %d: %v", len(got), want, summary(got))
	}
}

// TestReplicationFailedFiresWhenAPeerCannotBeReplicated: the links to
// eastus refuse blob downloads (the feed still answers; no other region
// gets the blob to offer), so the image cannot be applied: after
// wedgedAfter, westeurope fires
// replication-failed once; when the link heals, replicated follows.
func TestReplicationFailedFiresWhenAPeerCannotBeReplicated(t *testing.T) {
	link := &faultyLink{}
	link.set(func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/") })
	reg := runLinked(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), Webhooks: fastWebhooks,
		WedgedAfter: 300 * time.Millisecond}, link, []string{"westeurope", "southeastasia"})
	rc := startReceiver(t, reg, nil)
	east := reg.ByName["eastus"].URL
	createWebhook(t, reg, east, "westfailures", mgmtapi.WebhookBody{URI: ptr(receiverURL(rc)),
		Actions: []string{"replication-failed", "replicated"}, Location: ptr("westeurope")}, rc)
	img := push(t, east, "stuck", "v1", "cannot pass", 100<<10)
	eventually(t, 30*time.Second, func() error {
		if rc.count("replication-failed", "westeurope") != 1 {
			return fmt.Errorf("events so far: %v", summary(rc.events()))
		}
		return nil
	})
	for _, r := range rc.events() {
		if r.event.Action == "replication-failed" && (r.event.Target.Repository != "stuck" || r.event.Origin != "eastus" || !strings.Contains(r.event.Error, "503")) {
			t.Errorf("replication-failed says %+v", r.event)
		}
	}
	link.set(func(*http.Request) bool { return false })
	eventually(t, 30*time.Second, func() error {
		if rc.count("replicated", "westeurope") != 1 {
			return fmt.Errorf("events so far: %v", summary(rc.events()))
		}
		return nil
	})
	if n := rc.count("replication-failed", ""); n != 1 {
		t.Errorf("replication-failed arrived %d times for one stuck record", n)
	}
	if n := rc.count("replicated", "eastus") + rc.count("replicated", "southeastasia"); n != 0 {
		t.Errorf("a webhook bound to westeurope got %d events of other regions", n)
	}
	if err := pullable(t, reg.ByName["westeurope"].URL, "stuck", "v1", img); err != nil {
		t.Fatal(err)
	}
}
