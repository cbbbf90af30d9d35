package up_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/tlsconf"
	"github.com/georeg/georeg/internal/up"
)

// lockedBuffer collects the registry's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runLogged is runRegistry with every log line (debug and up) kept.
func runLogged(t *testing.T, cfg up.Config, logs io.Writer) *up.Registry {
	t.Helper()
	withStores(t, &cfg)
	ctx, cancel := context.WithCancel(context.Background())
	reg, err := up.Start(ctx, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := reg.Wait(); err != nil {
			t.Error(err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return reg
}

// call sends a request with an Authorization header ("" for none) from
// client, and returns the status and OCI error code.
func call(t *testing.T, client *http.Client, method, u, authz string, body any) (int, string, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, rd)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	code, _ := errorOf(out)
	return resp.StatusCode, code, out
}

// callAs returns a call with authz that must answer want, returning the
// body.
func callAs(t *testing.T, authz string) func(method, u string, body any, want int) []byte {
	return func(method, u string, body any, want int) []byte {
		t.Helper()
		code, _, out := call(t, http.DefaultClient, method, u, authz, body)
		if code != want {
			t.Fatalf("%s %s: %d %s", method, u, code, out)
		}
		return out
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

// tokenFor asks base's token endpoint for a token with scope, as user
// (anonymous when user is "").
func tokenFor(t *testing.T, base, user, pass, scope string) string {
	t.Helper()
	authz := ""
	if user != "" {
		authz = basic(user, pass)
	}
	code, _, out := call(t, http.DefaultClient, http.MethodGet, base+"/oauth2/token?service=georeg&scope="+url.QueryEscape(scope), authz, nil)
	var ans struct{ Token string }
	if code != 200 || json.Unmarshal(out, &ans) != nil || ans.Token == "" {
		t.Fatalf("token for %q (%s): %d %s", user, scope, code, out)
	}
	return ans.Token
}

// TestAuthMatrix: every kind of caller against every route class, in two
// regions, with tokens issued by eastus only (a token works in every
// region). Nothing secret reaches a log line.
func TestAuthMatrix(t *testing.T) {
	dir := t.TempDir()
	logs := &lockedBuffer{}
	reg := runLogged(t, up.Config{DataDir: dir, Regions: threeRegions()[:2], Auth: true}, logs)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	adminPass, err := up.LoadAdminPassword(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin := basic("admin", adminPass)
	mustCall := callAs(t, admin)
	mustCall(http.MethodPut, east+"/_georeg/v1/scope-maps/readers", auth.ScopeMap{Actions: []string{"repositories/app/content/read"}}, 200)
	mustCall(http.MethodPut, east+"/_georeg/v1/scope-maps/writers", auth.ScopeMap{Actions: []string{"repositories/app/content/read", "repositories/app/content/write"}}, 200)
	passwords := map[string]string{"admin": adminPass}
	for name, sm := range map[string]string{"reader": "readers", "writer": "writers"} {
		var created mgmtapi.TokenCreated
		_ = json.Unmarshal(mustCall(http.MethodPut, east+"/_georeg/v1/tokens/"+name, mgmtapi.TokenBody{ScopeMap: ptr(sm)}, 200), &created)
		passwords[name] = created.Password
	}
	eventually(t, 10*time.Second, func() error {
		if code, _, _ := call(t, http.DefaultClient, http.MethodGet, west+"/_georeg/v1/tokens/writer", admin, nil); code != 200 {
			return fmt.Errorf("westeurope has no writer token yet: %d", code)
		}
		return nil
	})
	// Content to read: pushed as admin.
	adminPush := "Bearer " + tokenFor(t, east, "admin", adminPass, "repository:app:pull,push")
	layer := []byte("layer")
	ld := sha256Hex(layer)
	req, _ := http.NewRequest(http.MethodPost, east+"/v2/app/blobs/uploads/?digest=sha256:"+ld, bytes.NewReader(layer))
	req.Header.Set("Authorization", adminPush)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("push a blob as admin: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[]}`, ld, len(layer))
	req, _ = http.NewRequest(http.MethodPut, east+"/v2/app/manifests/v1", strings.NewReader(m))
	req.Header.Set("Authorization", adminPush)
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("push a manifest as admin: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, base := range []string{east, west} {
		eventually(t, 10*time.Second, func() error {
			code, _, _ := call(t, http.DefaultClient, http.MethodGet, base+"/v2/app/tags/list", "Bearer "+tokenFor(t, east, "admin", adminPass, "repository:app:pull"), nil)
			if code != 200 {
				return fmt.Errorf("app not in %s yet", base)
			}
			return nil
		})
	}

	type class struct {
		name, method, path, scope string
		body                      string // sent as an OCI manifest when set
	}
	md := digest.FromString(m).String()
	session := "/v2/app/blobs/uploads/{region}." + strings.Repeat("0", 32) // not open: 404 once allowed
	classes := []class{
		{name: "base", method: http.MethodGet, path: "/v2/"},
		{name: "catalog", method: http.MethodGet, path: "/v2/_catalog", scope: "registry:catalog:*"},
		{name: "pull", method: http.MethodGet, path: "/v2/app/manifests/v1", scope: "repository:app:pull"},
		{name: "pull-head", method: http.MethodHead, path: "/v2/app/manifests/v1", scope: "repository:app:pull"},
		{name: "blob", method: http.MethodGet, path: "/v2/app/blobs/sha256:" + ld, scope: "repository:app:pull"},
		{name: "blob-head", method: http.MethodHead, path: "/v2/app/blobs/sha256:" + ld, scope: "repository:app:pull"},
		{name: "referrers", method: http.MethodGet, path: "/v2/app/referrers/" + md, scope: "repository:app:pull"},
		{name: "tags", method: http.MethodGet, path: "/v2/app/tags/list", scope: "repository:app:pull"},
		{name: "push", method: http.MethodPost, path: "/v2/app/blobs/uploads/", scope: "repository:app:pull,push"},
		{name: "upload-patch", method: http.MethodPatch, path: session, scope: "repository:app:pull,push"},
		{name: "upload-status", method: http.MethodGet, path: session, scope: "repository:app:pull,push"},
		{name: "upload-put", method: http.MethodPut, path: session + "?digest=sha256:" + ld, scope: "repository:app:pull,push"},
		{name: "manifest-put", method: http.MethodPut, path: "/v2/app/manifests/v2", scope: "repository:app:pull,push", body: m},
		{name: "push-other", method: http.MethodPost, path: "/v2/other/blobs/uploads/", scope: "repository:other:pull,push"},
		{name: "delete", method: http.MethodDelete, path: "/v2/app/blobs/sha256:" + strings.Repeat("0", 64), scope: "repository:app:delete"},
		{name: "manifest-delete", method: http.MethodDelete, path: "/v2/app/manifests/sha256:" + strings.Repeat("0", 64), scope: "repository:app:delete"},
		{name: "metrics", method: http.MethodGet, path: "/metrics"},
		{name: "mgmt", method: http.MethodGet, path: "/_georeg/v1/webhooks", scope: "repository:app:pull"},
	}
	eastRegion := reg.ByName["eastus"].Node.Region
	// Tokens no caller should get past: expired, signed by a key this
	// registry does not have, issued for another service.
	adminP := &auth.Principal{Name: "admin", Kind: auth.KindUser, Admin: true}
	issue := func(s *auth.Service) string {
		raw, _, err := s.Issue(t.Context(), adminP, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	quiet := slog.New(slog.DiscardHandler)
	expired := issue(auth.New(auth.Config{Enabled: true}, eastRegion, quiet).WithClock(func() time.Time { return time.Now().Add(-time.Hour) }))
	otherService := issue(auth.New(auth.Config{Enabled: true, Service: "another"}, eastRegion, quiet))
	otherRegion := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()[:1], Auth: true})
	otherKey := issue(auth.New(auth.Config{Enabled: true}, otherRegion.Regions[0].Node.Region, quiet))

	// Expected status per caller and class (the same in both regions).
	none := func(code int) []int {
		out := make([]int, len(classes))
		for i := range out {
			out[i] = code
		}
		return out
	}
	want := map[string][]int{
		//            base catalog pull head blob bhead refs tags push patch status put mput other delete mdelete metrics mgmt
		"anonymous":     none(401),
		"reader":        {200, 403, 200, 200, 200, 200, 200, 200, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403},
		"writer":        {200, 403, 200, 200, 200, 200, 200, 200, 202, 404, 404, 404, 201, 403, 403, 403, 403, 403},
		"admin":         {200, 200, 200, 200, 200, 200, 200, 200, 202, 404, 404, 404, 201, 202, 404, 404, 200, 200},
		"expired":       none(401),
		"other-key":     none(401),
		"other-service": none(401),
	}
	for _, caller := range []string{"anonymous", "reader", "writer", "admin", "expired", "other-key", "other-service"} {
		for i, c := range classes {
			var authz string
			switch caller {
			case "anonymous":
			case "expired":
				authz = "Bearer " + expired
			case "other-key":
				authz = "Bearer " + otherKey
			case "other-service":
				authz = "Bearer " + otherService
			default:
				scope := c.scope
				if scope == "" {
					scope = "repository:app:pull"
				}
				authz = "Bearer " + tokenFor(t, east, caller, passwords[caller], scope)
			}
			for _, r := range []*up.Region{reg.ByName["eastus"], reg.ByName["westeurope"]} {
				u := r.URL + strings.ReplaceAll(c.path, "{region}", r.Name)
				var code int
				var oci string
				var body []byte
				if c.body != "" {
					req, _ := http.NewRequest(c.method, u, strings.NewReader(c.body))
					req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
					if authz != "" {
						req.Header.Set("Authorization", authz)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
					oci, _ = errorOf(body)
				} else {
					code, oci, body = call(t, http.DefaultClient, c.method, u, authz, nil)
				}
				if code != want[caller][i] {
					t.Errorf("%s %s in %s: %d %s, want %d", caller, c.name, r.Name, code, body, want[caller][i])
				}
				if c.method != http.MethodHead && (code == 401 && oci != "UNAUTHORIZED" || code == 403 && oci != "DENIED") {
					t.Errorf("%s %s: %d with code %s", caller, c.name, code, oci)
				}
			}
		}
	}
	// The management API takes an admin's basic auth, and refuses a token's.
	if code, _, _ := call(t, http.DefaultClient, http.MethodGet, west+"/_georeg/v1/tokens", basic("reader", passwords["reader"]), nil); code != 403 {
		t.Errorf("a token's basic auth on the management API: %d", code)
	}

	// Anonymous pull: pulls need nothing, pushes still do.
	mustCall(http.MethodPatch, east+"/_georeg/v1/registry", mgmtapi.RegistryBody{AnonymousPullEnabled: ptr(true)}, 200)
	for _, base := range []string{east, west} {
		eventually(t, 10*time.Second, func() error {
			if code, _, _ := call(t, http.DefaultClient, http.MethodGet, base+"/v2/app/manifests/v1", "", nil); code != 200 {
				return fmt.Errorf("anonymous pull in %s: %d", base, code)
			}
			return nil
		})
		if code, _, _ := call(t, http.DefaultClient, http.MethodPost, base+"/v2/app/blobs/uploads/", "", nil); code != 401 {
			t.Errorf("anonymous push in %s with anonymous pull on: %d", base, code)
		}
	}

	// Network rules: default Deny with 127.0.0.2 allowed, in every region.
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	}
	rules := auth.NetworkRules{DefaultAction: auth.Deny, IPRules: []auth.IPRule{{Action: auth.Allow, Value: "127.0.0.2/32"}}}
	// Rules that deny the caller's own address are refused, saying why,
	// and change nothing, unless forced.
	if code, oci, out := call(t, from("127.0.0.1"), http.MethodPatch, east+"/_georeg/v1/registry", admin, mgmtapi.RegistryBody{NetworkRuleSet: &rules}); code != 403 || oci != "DENIED" ||
		!strings.Contains(string(out), "would deny your own address 127.0.0.1") || !strings.Contains(string(out), "--force") {
		t.Fatalf("rules that deny the caller: %d %s", code, out)
	}
	if code, _, out := call(t, from("127.0.0.1"), http.MethodGet, east+"/_georeg/v1/registry", admin, nil); code != 200 || strings.Contains(string(out), "Deny") {
		t.Fatalf("a refused change changed the rules: %d %s", code, out)
	}
	if code, _, out := call(t, from("127.0.0.1"), http.MethodPatch, east+"/_georeg/v1/registry", admin, mgmtapi.RegistryBody{NetworkRuleSet: &rules, Force: true}); code != 200 {
		t.Fatalf("set network rules with force: %d %s", code, out)
	}
	for _, base := range []string{east, west} {
		eventually(t, 10*time.Second, func() error {
			code, oci, body := call(t, from("127.0.0.3"), http.MethodGet, base+"/v2/app/manifests/v1", "", nil)
			if code != 403 || oci != "DENIED" || !strings.Contains(string(body), "127.0.0.3") || !strings.Contains(string(body), "network rules") {
				return fmt.Errorf("127.0.0.3 in %s: %d %s", base, code, body)
			}
			return nil
		})
		if code, _, body := call(t, from("127.0.0.2"), http.MethodGet, base+"/v2/app/manifests/v1", "", nil); code != 200 {
			t.Errorf("127.0.0.2 (allowed) in %s: %d %s", base, code, body)
		}
		// From loopback, management is never denied (an admin still signs
		// in): the rules cannot lock the operator out.
		if code, _, out := call(t, from("127.0.0.1"), http.MethodGet, base+"/_georeg/v1/registry", admin, nil); code != 200 {
			t.Errorf("the admin on loopback, denied by the rules, managing %s: %d %s", base, code, out)
		}
		if code, _, _ := call(t, from("127.0.0.1"), http.MethodGet, base+"/_georeg/v1/registry", "", nil); code != 401 {
			t.Errorf("management from loopback without credentials in %s: %d, want 401", base, code)
		}
	}
	// Replication (peers connect from 127.0.0.1) is not a client: it goes
	// on under the rules. A push from the allowed address arrives in
	// westeurope.
	code, _, out := call(t, from("127.0.0.2"), http.MethodGet, east+"/oauth2/token?service=georeg&scope=repository:app:pull,push", admin, nil)
	var ans struct{ Token string }
	if code != 200 || json.Unmarshal(out, &ans) != nil {
		t.Fatalf("token from an allowed address: %d %s", code, out)
	}
	req, _ = http.NewRequest(http.MethodPut, east+"/v2/app/manifests/under-rules", strings.NewReader(m))
	req.Header.Set("Authorization", "Bearer "+ans.Token)
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp, err := from("127.0.0.2").Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("push from an allowed address: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	eventually(t, 10*time.Second, func() error {
		if code, _, _ := call(t, from("127.0.0.2"), http.MethodGet, west+"/v2/app/manifests/under-rules", "Bearer "+ans.Token, nil); code != 200 {
			return fmt.Errorf("the push has not replicated under the rules: %d", code)
		}
		return nil
	})
	rules.DefaultAction = auth.Allow
	if code, _, out := call(t, from("127.0.0.2"), http.MethodPatch, west+"/_georeg/v1/registry", admin, mgmtapi.RegistryBody{NetworkRuleSet: &rules}); code != 200 {
		t.Fatalf("reset network rules from an allowed address: %d %s", code, out)
	}

	// The audit log, gathered from both regions: logins (one refused),
	// the admin's push, and the reader's refused push in each region.
	for _, base := range []string{east, west} {
		eventually(t, 10*time.Second, func() error {
			if code, _, out := call(t, http.DefaultClient, http.MethodGet, base+"/v2/", "", nil); code == 403 {
				return fmt.Errorf("the rules still deny 127.0.0.1 in %s: %s", base, out)
			}
			return nil
		})
	}
	call(t, http.DefaultClient, http.MethodGet, west+"/oauth2/token?service=georeg", basic("reader", "wrong-password"), nil)
	code, _, out = call(t, http.DefaultClient, http.MethodGet, east+"/_georeg/v1/audit?since=1h&n=10000", admin, nil)
	var audit mgmtapi.AuditLog
	if code != 200 || json.Unmarshal(out, &audit) != nil {
		t.Fatalf("audit: %d %s", code, out)
	}
	count := func(region, actor, action, outcome, repo string) int {
		n := 0
		for _, e := range audit.Entries {
			if (region == "" || e.Region == region) && e.Actor == actor && e.Action == action && e.Outcome == outcome && (repo == "" || e.Repo == repo) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		region, actor, action, outcome, repo string
		min                                  int
	}{
		{"eastus", "admin", "push", "ok", "app", 1},
		{"eastus", "reader", "login", "ok", "", 1},
		{"westeurope", "reader", "login", "denied", "", 1},
		{"eastus", "reader", "denied", "denied", "app", 1},
		{"westeurope", "reader", "denied", "denied", "app", 1},
		{"westeurope", "writer", "denied", "denied", "other", 1},
	} {
		if got := count(c.region, c.actor, c.action, c.outcome, c.repo); got < c.min {
			t.Errorf("audit has %d entries of %+v", got, c)
		}
	}
	for _, e := range audit.Entries {
		if e.Action == "push" && (e.Client == "" || e.RequestID == "") {
			t.Errorf("an audited push without client or request id: %+v", e)
		}
	}
	for _, secret := range []string{adminPass, passwords["reader"], passwords["writer"], "eyJ"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a log line holds a secret (%.6s...)", secret)
		}
	}
}

// TestUpWithTLSAndAuthServesEverythingOverHTTPS: `georeg up --tls --auth`
// as a test: the front door and every region serve HTTPS from the local
// CA, the door reads the regions' status with its peer credential (else
// it would route nowhere), and a push through the door replicates.
func TestUpWithTLSAndAuthServesEverythingOverHTTPS(t *testing.T) {
	dir := t.TempDir()
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions(), TLS: true, Auth: true, FrontDoor: "127.0.0.1:0"})
	tc, err := tlsconf.Client(reg.TLS.CA)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	defer client.CloseIdleConnections()
	if !strings.HasPrefix(reg.FrontDoor, "https://") {
		t.Fatalf("front door at %s", reg.FrontDoor)
	}
	if resp, err := http.Get(strings.Replace(reg.FrontDoor, "https://", "http://", 1) + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("the door answers plain HTTP: %d", resp.StatusCode)
		}
	}
	password, _ := up.LoadAdminPassword(dir)
	var token string
	eventually(t, 15*time.Second, func() error {
		code, _, out := call(t, client, http.MethodGet, reg.FrontDoor+"/oauth2/token?service=georeg&scope=repository:tls/app:pull,push", basic("admin", password), nil)
		var ans struct{ Token string }
		if code != 200 || json.Unmarshal(out, &ans) != nil {
			return fmt.Errorf("token through the door: %d %s", code, out)
		}
		token = ans.Token
		return nil
	})
	// The region that issued it signed it with its own first key, which
	// reaches the others by replication a moment later; the door may send
	// the push to any of them, and each takes the token at once (it waits
	// for a key on its way: docs/security.md).
	for _, r := range reg.Regions {
		if code, _, out := call(t, client, http.MethodGet, r.URL+"/v2/", "Bearer "+token, nil); code != 200 {
			t.Fatalf("%s refuses a token the registry just issued: %d %s", r.Name, code, out)
		}
	}
	cfgBlob := []byte(`{"tls":true}`)
	req, _ := http.NewRequest(http.MethodPost, reg.FrontDoor+"/v2/tls/app/blobs/uploads/?digest="+"sha256:"+sha256Hex(cfgBlob), bytes.NewReader(cfgBlob))
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("blob through the door: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[]}`, sha256Hex(cfgBlob), len(cfgBlob))
	req, _ = http.NewRequest(http.MethodPut, reg.FrontDoor+"/v2/tls/app/manifests/v1", strings.NewReader(m))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("manifest through the door: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, r := range reg.Regions {
		eventually(t, 15*time.Second, func() error {
			if code, _, _ := call(t, client, http.MethodGet, r.URL+"/v2/tls/app/manifests/v1", "Bearer "+token, nil); code != 200 {
				return fmt.Errorf("%s: %d", r.Name, code)
			}
			return nil
		})
	}
}

// TestATokenReachesItsRepositoriesMetadataAndLosesAccessWhenDisabled: a
// token whose scope map has metadata/read and metadata/write on app shows
// and locks app (not other) through the management API; a user may not
// take its name; disabled, its registry tokens stop working within
// seconds in every region, long before they expire.
func TestATokenReachesItsRepositoriesMetadataAndLosesAccessWhenDisabled(t *testing.T) {
	dir := t.TempDir()
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions()[:2], Auth: true})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	adminPass, err := up.LoadAdminPassword(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin := basic("admin", adminPass)
	must := callAs(t, admin)
	must(http.MethodPut, east+"/_georeg/v1/scope-maps/curators", auth.ScopeMap{Actions: []string{
		"repositories/app/content/read", "repositories/app/metadata/read", "repositories/app/metadata/write"}}, 200)
	var created mgmtapi.TokenCreated
	_ = json.Unmarshal(must(http.MethodPut, east+"/_georeg/v1/tokens/curator", mgmtapi.TokenBody{ScopeMap: ptr("curators")}, 200), &created)
	curator := basic("curator", created.Password)
	adminPush := "Bearer " + tokenFor(t, east, "admin", adminPass, "repository:app:pull,push repository:other:pull,push")
	for _, repo := range []string{"app", "other"} {
		layer := []byte("layer of " + repo)
		req, _ := http.NewRequest(http.MethodPost, east+"/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(layer).String(), bytes.NewReader(layer))
		req.Header.Set("Authorization", adminPush)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("push a blob to %s: %v %v", repo, resp, err)
		}
		resp.Body.Close()
		m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`, digest.FromBytes(layer), len(layer))
		req, _ = http.NewRequest(http.MethodPut, east+"/v2/"+repo+"/manifests/v1", strings.NewReader(m))
		req.Header.Set("Authorization", adminPush)
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
			t.Fatalf("push a manifest to %s: %v %v", repo, resp, err)
		}
		resp.Body.Close()
	}
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{http.MethodGet, "/_georeg/v1/repository/tags?name=app", nil, 200},
		{http.MethodGet, "/_georeg/v1/repository/manifests?name=app", nil, 200},
		{http.MethodPatch, "/_georeg/v1/repository?name=app&image=v1", mgmtapi.LockBody{WriteEnabled: ptr(false)}, 200},
		{http.MethodGet, "/_georeg/v1/repository/tags?name=other", nil, 403},
		{http.MethodPatch, "/_georeg/v1/repository?name=other", mgmtapi.LockBody{WriteEnabled: ptr(false)}, 403},
		{http.MethodDelete, "/_georeg/v1/repository?name=app", nil, 403}, // no content/delete
		{http.MethodGet, "/_georeg/v1/webhooks", nil, 403},               // not about a repository: admins only
	} {
		if code, oci, out := call(t, http.DefaultClient, c.method, east+c.path, curator, c.body); code != c.want {
			t.Errorf("the curator token: %s %s: %d %s %s, want %d", c.method, c.path, code, oci, out, c.want)
		}
	}
	if out := must(http.MethodGet, east+"/_georeg/v1/repository/tags?name=app", nil, 200); !strings.Contains(string(out), `"writeEnabled":false`) {
		t.Errorf("the curator's lock does not show: %s", out)
	}
	if code, oci, _ := call(t, http.DefaultClient, http.MethodPut, east+"/_georeg/v1/users/curator", admin, mgmtapi.UserBody{Password: "a long password"}); code != 409 || oci != "ALREADY_EXISTS" {
		t.Errorf("a user named as a token: %d %s, want 409 ALREADY_EXISTS", code, oci)
	}

	// A registry token of the curator works in both regions, then stops
	// working once the token is disabled (it is valid for minutes more).
	bearer := "Bearer " + tokenFor(t, east, "curator", created.Password, "repository:app:pull")
	for _, base := range []string{east, west} {
		eventually(t, 10*time.Second, func() error {
			if code, _, _ := call(t, http.DefaultClient, http.MethodGet, base+"/v2/app/manifests/v1", bearer, nil); code != 200 {
				return fmt.Errorf("the curator's pull in %s: %d", base, code)
			}
			return nil
		})
	}
	must(http.MethodPatch, east+"/_georeg/v1/tokens/curator", mgmtapi.TokenBody{Status: ptr("disabled")}, 200)
	for _, base := range []string{east, west} {
		eventually(t, 10*time.Second, func() error {
			if code, oci, _ := call(t, http.DefaultClient, http.MethodGet, base+"/v2/app/manifests/v1", bearer, nil); code != 401 || oci != "UNAUTHORIZED" {
				return fmt.Errorf("a disabled token's registry token in %s: %d %s", base, code, oci)
			}
			return nil
		})
	}
}
