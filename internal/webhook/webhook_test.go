package webhook

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestScopeMatchesLikeACR(t *testing.T) {
	cases := []struct {
		scope, repo, tag string
		want             bool
	}{
		{"", "any/repo", "", true},
		{"", "any/repo", "v1", true},
		{"app:*", "app", "v1", true},
		{"app:*", "app", "", true}, // a push by digest
		{"app:*", "app2", "v1", false},
		{"app", "app", "latest", true}, // "app" means app:latest
		{"app", "app", "v1", false},
		{"app", "app", "", false},
		{"app:v1", "app", "v1", true},
		{"app:v1", "app", "", false},
		{"team/*:*", "team/a/b", "x", true},
		{"team/*:*", "teams/a", "x", false},
		{"*:release-*", "x/y", "release-2", true},
		{"*:release-*", "x/y", "rc-2", false},
		{"a*b*c:*", "axxbyyc", "t", true},
		{"a*b*c:*", "axxbyy", "t", false},
		{"*/*:*", "flat", "t", false},
		{"**:*", "x", "t", true},
	}
	for _, c := range cases {
		s, err := ParseScope(c.scope)
		if err != nil {
			t.Fatalf("ParseScope(%q): %v", c.scope, err)
		}
		if got := s.Matches(c.repo, c.tag); got != c.want {
			t.Errorf("scope %q on %s:%s = %v, want %v", c.scope, c.repo, c.tag, got, c.want)
		}
	}
}

func TestBadScopesAreRefusedWithTheReason(t *testing.T) {
	for _, s := range []string{"App:v1", "app:v1:x", "app:", ":v1", "app:v 1", "app:" + strings.Repeat("t", 129), "ap p"} {
		if _, err := ParseScope(s); err == nil {
			t.Errorf("ParseScope(%q) accepted", s)
		} else if !strings.Contains(err.Error(), "scope") {
			t.Errorf("ParseScope(%q): %v does not name the scope", s, err)
		}
	}
}

func TestConfigValidateNamesEveryBadField(t *testing.T) {
	c := &Config{URI: "ftp://x", Actions: []string{"push", "pull", "push"}, Scope: "A:b",
		Headers: map[string]string{"Content-Type": "x", "X-Georeg-Event": "y", "bad name": "z", "X-Ok": "a\nb"},
		Status:  "on", Region: "West Europe", Format: "xml"}
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"uri", `"pull" is not one of`, `"push" twice`, "scope", "Content-Type is set by the registry",
		"X-Georeg-Event is set by the registry", `"bad name" is not a header name`, "line break", "status", "location", "format"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	ok := &Config{URI: "https://ci.example.com/hook?x=1", Actions: []string{ActionPush}}
	if err := ok.Validate(); err != nil || ok.Status != StatusEnabled || ok.Format != FormatACR {
		t.Fatalf("valid config: %v (%+v)", err, ok)
	}
	if err := (&Config{URI: "http://user:pw@x/hook", Actions: []string{ActionPush}}).Validate(); err == nil || strings.Contains(err.Error(), "pw") {
		t.Fatalf("credentials in the URL: %v", err)
	}
}

func TestWantsFiltersByActionRegionScopeAndStatus(t *testing.T) {
	c := &Config{URI: "http://x", Actions: []string{ActionReplicated}, Scope: "app:*", Region: "westeurope", Status: StatusEnabled}
	if !c.Wants(ActionReplicated, "app", "v1", "westeurope") {
		t.Error("matching event not wanted")
	}
	for _, args := range [][4]string{
		{ActionPush, "app", "v1", "westeurope"},
		{ActionReplicated, "app", "v1", "eastus"},
		{ActionReplicated, "other", "v1", "westeurope"},
	} {
		if c.Wants(args[0], args[1], args[2], args[3]) {
			t.Errorf("%v wanted", args)
		}
	}
	c.Status = StatusDisabled
	if c.Wants(ActionReplicated, "app", "v1", "westeurope") {
		t.Error("a disabled webhook wants events")
	}
}

func TestViewHidesSecretsAndHeaderValues(t *testing.T) {
	c := &Config{URI: "https://x/hook?token=abc", Actions: []string{ActionPush}, Secret: "s3cr3t",
		Headers: map[string]string{"Authorization": "Bearer zzz"}}
	b, _ := json.Marshal(c.View("hook1"))
	for _, secret := range []string{"s3cr3t", "zzz", "abc"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("view shows %q: %s", secret, b)
		}
	}
	if !strings.Contains(string(b), "Authorization") || !strings.Contains(string(b), `"signed":true`) {
		t.Errorf("view hides too much: %s", b)
	}
}

func testEvent() Event {
	return Event{ID: "e1", Timestamp: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), Action: ActionPush,
		Target:  Target{MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 524, Digest: "sha256:ab", Length: 524, Repository: "app", Tag: "v1"},
		Request: Request{ID: "r1", Host: "registry", Method: "PUT", UserAgent: "crane"}, Region: "eastus"}
}

func TestPayloadIsACRJSONPlusRegion(t *testing.T) {
	b, ctype, err := Body(testEvent(), FormatACR)
	if err != nil || ctype != "application/json" {
		t.Fatal(err, ctype)
	}
	var got map[string]any
	_ = json.Unmarshal(b, &got)
	target, _ := got["target"].(map[string]any)
	request, _ := got["request"].(map[string]any)
	if got["id"] != "e1" || got["action"] != "push" || got["region"] != "eastus" || got["timestamp"] != "2026-11-22T10:00:00Z" ||
		target["repository"] != "app" || target["tag"] != "v1" || target["digest"] != "sha256:ab" || target["length"] != 524.0 ||
		target["size"] != 524.0 || target["mediaType"] == nil || request["useragent"] != "crane" || request["method"] != "PUT" {
		t.Errorf("payload: %s", b)
	}
}

func TestPayloadAsCloudEvent(t *testing.T) {
	b, ctype, err := Body(testEvent(), FormatCloudEvents)
	if err != nil || ctype != "application/cloudevents+json" {
		t.Fatal(err, ctype)
	}
	var ce struct {
		SpecVersion, ID, Source, Type, Subject, DataContentType string
		Data                                                    Event
	}
	_ = json.Unmarshal(b, &ce)
	if ce.SpecVersion != "1.0" || ce.ID != "e1" || ce.Source != "/georeg/regions/eastus" || ce.Type != "io.georeg.image.push" ||
		ce.Subject != "app:v1" || ce.Data.Target.Digest != "sha256:ab" {
		t.Errorf("cloud event: %s", b)
	}
}

func TestSignatureVerifies(t *testing.T) {
	body := []byte(`{"id":"e1"}`)
	sig := Sign("k", body)
	if !strings.HasPrefix(sig, "sha256=") || !Verify("k", body, sig) {
		t.Fatalf("signature %s does not verify", sig)
	}
	if Verify("other", body, sig) || Verify("k", []byte(`{"id":"e2"}`), sig) {
		t.Fatal("a wrong key or body verifies")
	}
}

func TestBackoffDoublesWithJitterWithinBounds(t *testing.T) {
	d := NewDeliverer(nil, nil, Options{MinBackoff: time.Second, MaxBackoff: time.Minute}, slog.New(slog.DiscardHandler))
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 10: time.Minute, 100: time.Minute} {
		for range 50 {
			got := d.backoff(n)
			if got < want/2 || got > want {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, got, want/2, want)
			}
		}
	}
}

func TestSendSignsAndReportsTheAnswer(t *testing.T) {
	var got http.Header
	var body []byte
	code := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, body = r.Header.Clone(), must(io.ReadAll(r.Body))
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "nope")
	}))
	defer srv.Close()
	d := NewDeliverer(nil, nil, Options{}, slog.New(slog.DiscardHandler))
	cfg := &Config{URI: srv.URL + "/hook?token=t0k3n", Secret: "k", Format: FormatACR, Headers: map[string]string{"Authorization": "Bearer zzz"}}
	payload, _ := json.Marshal(testEvent())
	res := d.Send(t.Context(), cfg, payload)
	if !res.OK() || res.StatusCode != 204 {
		t.Fatalf("result %+v", res)
	}
	if got.Get(EventIDHeader) != "e1" || got.Get("Authorization") != "Bearer zzz" || !Verify("k", body, got.Get(SignatureHeader)) ||
		got.Get("Content-Type") != "application/json" || got.Get("X-Georeg-Event") != "push" {
		t.Errorf("headers %v", got)
	}
	code = http.StatusInternalServerError
	if res := d.Send(t.Context(), cfg, payload); res.OK() || !strings.Contains(res.Error, "500") || !strings.Contains(res.Error, "nope") {
		t.Errorf("a 500 gave %+v", res)
	}
	srv.Close()
	res = d.Send(t.Context(), cfg, payload)
	if res.OK() || res.Error == "" || strings.Contains(res.Error, "t0k3n") || strings.Contains(res.Error, "zzz") {
		t.Errorf("a refused connection gave %+v (no secret may show)", res)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
