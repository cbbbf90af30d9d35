package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/webhook"
)

// startWebhookRegion runs one `georeg serve` whose webhook retries are
// fast (50 ms doubling to 300 ms).
func startWebhookRegion(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	addr, data := freeAddr(t), filepath.Join(dir, "eastus")
	cfg := fmt.Sprintf("region:\n  name: eastus\n  dataDir: %s\nhttp:\n  listen: %s\nwebhooks:\n  timeout: 2s\n  minBackoff: 50ms\n  maxBackoff: 300ms\noutbound:\n  allow: [127.0.0.0/8]\nlog:\n  level: warn\n", data, addr)
	file := filepath.Join(dir, "eastus.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, addr: addr, data: data, args: []string{"--config", file}}
	s.start()
	t.Cleanup(s.kill)
	return s
}

// hookReceiver records the events posted to it, checking signatures.
type hookReceiver struct {
	secret string
	srv    *http.Server
	done   chan struct{}
	mu     sync.Mutex
	events []webhook.Event
	bad    []string
}

func startHookReceiver(t *testing.T, addr, secret string) *hookReceiver {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{secret: secret, done: make(chan struct{})}
	h.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev webhook.Event
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := json.Unmarshal(body, &ev); err != nil || !webhook.Verify(h.secret, body, r.Header.Get(webhook.SignatureHeader)) {
			h.bad = append(h.bad, string(body))
		}
		h.events = append(h.events, ev)
	})}
	go func() { defer close(h.done); _ = h.srv.Serve(l) }()
	t.Cleanup(func() { _ = h.srv.Close(); <-h.done })
	return h
}

func (h *hookReceiver) got() ([]webhook.Event, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]webhook.Event(nil), h.events...), append([]string(nil), h.bad...)
}

func georeg(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, georegBin, args...)
}

func waitFor(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
}

// TestWebhookDeliveriesSurviveKill9: deliveries pending (the receiver is
// down) when the region is killed with SIGKILL are all made after it
// restarts and the receiver is back.
func TestWebhookDeliveriesSurviveKill9(t *testing.T) {
	s := startWebhookRegion(t)
	registry := "http://" + s.addr
	hookAddr := freeAddr(t) // nobody listens: the receiver is down
	out := georeg(t, "webhook", "create", "--registry", registry, "--name", "crashhook",
		"--uri", "http://"+hookAddr+"/hook", "--actions", "push", "--output", "json")
	var created mgmtapi.WebhookCreated
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Secret == "" {
		t.Fatalf("create printed %s (%v)", out, err)
	}
	pushed := map[string]bool{}
	for i := range 3 {
		pushed[pushImage(t, s.addr, "crash", fmt.Sprintf("v%d", i), fmt.Sprintf("crash-%d", i)).String()] = true
	}
	waitFor(t, 20*time.Second, func() error {
		var evs mgmtapi.WebhookEvents
		if err := json.Unmarshal([]byte(georeg(t, "webhook", "list-events", "crashhook", "--registry", registry, "--output", "json")), &evs); err != nil {
			return err
		}
		if len(evs.Events) != 3 {
			return fmt.Errorf("%d events logged", len(evs.Events))
		}
		for _, e := range evs.Events {
			if e.State != "pending" || e.Attempts < 1 {
				return fmt.Errorf("event %s: %s after %d attempts", e.EventID, e.State, e.Attempts)
			}
		}
		return nil
	})
	s.kill9()
	h := startHookReceiver(t, hookAddr, created.Secret)
	s.start()
	waitFor(t, 30*time.Second, func() error {
		evs, _ := h.got()
		arrived := map[string]bool{}
		for _, ev := range evs {
			if ev.Action == "push" {
				arrived[ev.Target.Digest] = true
			}
		}
		for d := range pushed {
			if !arrived[d] {
				return fmt.Errorf("the push of %s has not arrived (%d events so far)", d, len(evs))
			}
		}
		return nil
	})
	if _, bad := h.got(); len(bad) > 0 {
		t.Fatalf("unsigned or malformed deliveries: %v", bad)
	}
	table := georeg(t, "webhook", "list-events", "crashhook", "--registry", registry)
	if strings.Count(table, "delivered") != 3 {
		t.Fatalf("list-events after the restart:\n%s", table)
	}
}

// TestWebhookCommands drives every `georeg webhook` command.
func TestWebhookCommands(t *testing.T) {
	s := startWebhookRegion(t)
	registry := "http://" + s.addr
	hookAddr := freeAddr(t)
	out := georeg(t, "webhook", "create", "--registry", registry, "--name", "cihook1", "--uri", "http://"+hookAddr+"/hook",
		"--actions", "push", "--actions", "delete", "--scope", "app:*", "--headers", "Authorization=Bearer t0k3n", "--secret", "k3y")
	if !strings.Contains(out, "cihook1") || !strings.Contains(out, "push,delete") {
		t.Fatalf("create printed:\n%s", out)
	}
	for _, cmd := range [][]string{{"show", "cihook1"}, {"list"}, {"show", "cihook1", "--output", "json"}} {
		out := georeg(t, append(append([]string{"webhook"}, cmd...), "--registry", registry)...)
		if strings.Contains(out, "t0k3n") || strings.Contains(out, "k3y") || !strings.Contains(out, "cihook1") {
			t.Fatalf("webhook %v shows a secret or misses the webhook:\n%s", cmd, out)
		}
	}
	if out := georeg(t, "webhook", "get-config", "cihook1", "--registry", registry); !strings.Contains(out, "Bearer t0k3n") || !strings.Contains(out, hookAddr) {
		t.Fatalf("get-config:\n%s", out)
	}
	// Receiver down: ping reports it and fails.
	if out, err := runErr(t, georegBin, "webhook", "ping", "cihook1", "--registry", registry); err == nil || !strings.Contains(out, "refused") {
		t.Fatalf("ping to a closed port: %v\n%s", err, out)
	}
	h := startHookReceiver(t, hookAddr, "k3y")
	if out := georeg(t, "webhook", "ping", "cihook1", "--registry", registry); !strings.Contains(out, "delivered, status 200") {
		t.Fatalf("ping:\n%s", out)
	}
	pushImage(t, s.addr, "app", "v1", "commands")
	pushImage(t, s.addr, "nothook", "v1", "commands")
	georeg(t, "webhook", "update", "cihook1", "--status", "disabled", "--registry", registry)
	pushImage(t, s.addr, "app", "v2", "disabled")
	georeg(t, "webhook", "update", "cihook1", "--status", "enabled", "--registry", registry)
	pushImage(t, s.addr, "app", "v3", "enabled")
	waitFor(t, 20*time.Second, func() error {
		evs, _ := h.got()
		var got []string
		for _, ev := range evs {
			got = append(got, ev.Action+":"+ev.Target.Repository+":"+ev.Target.Tag)
		}
		// The first ping went to a closed port and is retried, so it may
		// arrive again later; pushes arrive once, in order of the log.
		pushes := []string{}
		for _, g := range got {
			if strings.HasPrefix(g, "push:") {
				pushes = append(pushes, g)
			}
		}
		if fmt.Sprint(pushes) != "[push:app:v1 push:app:v3]" {
			return fmt.Errorf("pushes received: %v", pushes)
		}
		return nil
	})
	if _, bad := h.got(); len(bad) > 0 {
		t.Fatalf("unsigned deliveries: %v", bad)
	}
	for _, bad := range [][]string{
		{"create", "--name", "x", "--uri", "http://127.0.0.1:1/", "--actions", "push"},                             // name too short
		{"create", "--name", "cihook2", "--uri", "ftp://x", "--actions", "push"},                                   // not http
		{"create", "--name", "cihook2", "--uri", "http://127.0.0.1:1/", "--actions", "pull"},                       // no such action
		{"create", "--name", "cihook2", "--uri", "http://127.0.0.1:1/", "--actions", "push", "--location", "mars"}, // no such region
		{"create", "--name", "cihook1", "--uri", "http://127.0.0.1:1/", "--actions", "push"},                       // exists
		{"show", "nosuchhook"},
	} {
		out, err := runErr(t, georegBin, append(append([]string{"webhook"}, bad...), "--registry", registry)...)
		if err == nil || !strings.Contains(out, "georeg:") {
			t.Errorf("webhook %v: accepted or unclear:\n%s", bad, out)
		}
	}
	georeg(t, "webhook", "delete", "cihook1", "--registry", registry)
	if out, err := runErr(t, georegBin, "webhook", "show", "cihook1", "--registry", registry); err == nil {
		t.Fatalf("a deleted webhook shows:\n%s", out)
	}
}
