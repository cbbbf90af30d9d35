package mgmtapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/replicate"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"))
}

// unreachable is an endpoint nothing listens on: a region that is down.
const unreachable = "http://127.0.0.1:1"

// serveAPI serves eastus's management API, with westeurope (down) as its
// configured peer.
func serveAPI(t *testing.T) (*region.Region, string) {
	t.Helper()
	r, err := region.Open(t.Context(), region.Config{Name: "eastus", DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	api := mgmtapi.New(r, []mgmtapi.RegionInfo{{Name: "eastus", Endpoint: srv.URL}, {Name: "westeurope", Endpoint: unreachable}}, nil)
	api.Register(mux)
	t.Cleanup(func() {
		srv.Close()
		r.Close()
	})
	return r, srv.URL
}

func call(t *testing.T, method, u, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func codeOf(body []byte) string {
	var env struct{ Errors []struct{ Code string } }
	if json.Unmarshal(body, &env) != nil || len(env.Errors) == 0 {
		return ""
	}
	return env.Errors[0].Code
}

// TestBadRequestsGetAnOCIErrorAndChangeNothing: each bad request is
// answered with its OCI error code, and the registry's configuration is
// the same afterwards.
func TestBadRequestsGetAnOCIErrorAndChangeNothing(t *testing.T) {
	_, base := serveAPI(t)
	v1 := base + "/_georeg/v1"
	if code, body := call(t, "PUT", v1+"/replications/brazilsouth", `{"endpoint":"`+unreachable+`"}`); code != 200 {
		t.Fatalf("a good replica: %d %s", code, body)
	}
	// A region with an endpoint registers itself (replicate.register).
	if code, body := call(t, "PUT", v1+"/replications/eastus", `{"endpoint":"`+base+`"}`); code != 200 {
		t.Fatalf("this region's own setting: %d %s", code, body)
	}
	state := func() string {
		var out bytes.Buffer
		for _, p := range []string{"/replications", "/webhooks", "/policies/retention", "/locks", "/repositories"} {
			code, body := call(t, "GET", v1+p, "")
			fmt.Fprintf(&out, "%s %d %s\n", p, code, body)
		}
		return out.String()
	}
	before := state()
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"PUT", "/replications/Brazil_South", `{"endpoint":"http://x:1"}`, 400, "NAME_INVALID"},
		{"PUT", "/replications/" + region.ReservedName, `{"endpoint":"http://x:1"}`, 400, "NAME_INVALID"},
		{"PUT", "/replications/brazilsouth", `not json`, 400, "MANIFEST_INVALID"},
		{"PUT", "/replications/brazilsouth", `{"endpoint":"ftp://x:1"}`, 400, "MANIFEST_INVALID"},
		{"PUT", "/replications/norway", `{}`, 400, "MANIFEST_INVALID"}, // a new region needs an endpoint
		{"DELETE", "/replications/eastus", ``, 403, "DENIED"},
		{"DELETE", "/replications/westeurope", ``, 403, "DENIED"}, // configured, not registered
		{"GET", "/replications/nosuch", ``, 404, "NAME_UNKNOWN"},
		{"GET", "/images/status?repository=Bad&reference=v1", ``, 400, "NAME_INVALID"},
		{"GET", "/images/status?repository=app", ``, 400, "MANIFEST_INVALID"},
		{"GET", "/images/status?repository=app&reference=v1", ``, 404, "MANIFEST_UNKNOWN"},
		{"GET", "/repository?name=UPPER", ``, 400, "NAME_INVALID"},
		{"DELETE", "/repository?name=../etc", ``, 400, "NAME_INVALID"},
	} {
		code, body := call(t, tc.method, v1+tc.path, tc.body)
		if code != tc.status || codeOf(body) != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", tc.method, tc.path, tc.body, code, body, tc.status, tc.code)
		}
	}
	if after := state(); after != before {
		t.Fatalf("refused requests changed the configuration:\nbefore %s\nafter  %s", before, after)
	}
}

// TestReplicationStatesSayWhatIsKnown: this region is Ready; a
// registered region that never answered is Creating; one that announced
// it was Ready and does not answer now is Down; a configured peer that
// does not answer is Down.
func TestReplicationStatesSayWhatIsKnown(t *testing.T) {
	r, base := serveAPI(t)
	v1 := base + "/_georeg/v1"
	if code, body := call(t, "PUT", v1+"/replications/brazilsouth", `{"endpoint":"`+unreachable+`"}`); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	ready, _ := json.Marshal(replicate.ReplicaSetting{Endpoint: unreachable, RegionEndpointEnabled: true, Ready: true})
	if _, err := r.PutSetting(t.Context(), replicate.ReplicaKind, "norwayeast", ready); err != nil {
		t.Fatal(err)
	}
	code, body := call(t, "GET", v1+"/replications?status=true", "")
	var list []mgmtapi.Replication
	if code != 200 || json.Unmarshal(body, &list) != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	got := map[string]string{}
	for _, rep := range list {
		got[rep.Name] = rep.Source + " " + rep.State
	}
	want := map[string]string{"eastus": "self Ready", "westeurope": "config Down", "brazilsouth": "registered Creating", "norwayeast": "registered Down"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	// Routing off for a registered region keeps its endpoint.
	if code, body := call(t, "PUT", v1+"/replications/brazilsouth", `{"regionEndpointEnabled":false}`); code != 200 {
		t.Fatalf("routing off: %d %s", code, body)
	}
	code, body = call(t, "GET", v1+"/replications/brazilsouth", "")
	var rep mgmtapi.Replication
	if code != 200 || json.Unmarshal(body, &rep) != nil || rep.RegionEndpointEnabled || rep.Endpoint != unreachable || rep.StatusError == "" {
		t.Fatalf("show after routing off: %d %s", code, body)
	}
}

// TestAnUpdateOfARegionsRoutingKeepsItsReadyMark: an admin turning
// routing off for a region, configured or registered, changes only the
// routing: the region's Ready mark (sticky) and creation time stay as
// the region wrote them.
func TestAnUpdateOfARegionsRoutingKeepsItsReadyMark(t *testing.T) {
	r, base := serveAPI(t)
	ctx := t.Context()
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, name := range []string{"westeurope", "norwayeast"} { // configured, registered
		marked, _ := json.Marshal(replicate.ReplicaSetting{Endpoint: unreachable, RegionEndpointEnabled: true, Created: created, Ready: true})
		if _, err := r.PutSetting(ctx, replicate.ReplicaKind, name, marked); err != nil {
			t.Fatal(err)
		}
		if code, body := call(t, "PUT", base+"/_georeg/v1/replications/"+name, `{"regionEndpointEnabled":false}`); code != 200 {
			t.Fatalf("routing off for %s: %d %s", name, code, body)
		}
		s, err := r.Setting(ctx, replicate.ReplicaKind, name)
		if err != nil {
			t.Fatal(err)
		}
		var got replicate.ReplicaSetting
		if err := json.Unmarshal(s.Value, &got); err != nil {
			t.Fatal(err)
		}
		if got.RegionEndpointEnabled || !got.Ready || !got.Created.Equal(created) {
			t.Errorf("%s after routing off: %s, want routing off, still Ready, created %s", name, s.Value, created)
		}
	}
}

// TestImageStatusSaysWhereAnImageIs: an image pushed here is present
// here and pending in every other region until they acknowledge it;
// once deleted here, the delete is pending where a region cannot be
// asked.
func TestImageStatusSaysWhereAnImageIs(t *testing.T) {
	r, base := serveAPI(t)
	ctx := t.Context()
	cfg, layer := []byte(`{"os":"linux"}`), bytes.Repeat([]byte("layer"), 1000)
	for _, b := range [][]byte{cfg, layer} {
		if _, err := r.PutBlob(ctx, "app", digest.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer))
	res, err := r.PutManifest(ctx, "app", "v1", "application/vnd.oci.image.manifest.v1+json", m)
	if err != nil {
		t.Fatal(err)
	}
	status := func(query string) mgmtapi.ImageStatus {
		t.Helper()
		code, body := call(t, "GET", base+"/_georeg/v1/images/status?"+query, "")
		var st mgmtapi.ImageStatus
		if code != 200 || json.Unmarshal(body, &st) != nil {
			t.Fatalf("status %s: %d %s", query, code, body)
		}
		return st
	}
	states := func(st mgmtapi.ImageStatus) string {
		var out []string
		for _, rs := range st.Regions {
			out = append(out, rs.Name+"="+rs.State)
		}
		return strings.Join(out, " ")
	}
	st := status("repository=app&reference=v1")
	if st.Digest != res.Digest.String() || st.Complete || states(st) != "eastus=present westeurope=pending" {
		t.Fatalf("after a push: %+v", st)
	}
	if st := status("repository=app&reference=v1&local=true"); states(st) != "eastus=present" || !st.Complete {
		t.Fatalf("local: %+v", st)
	}
	if err := r.DeleteManifest(ctx, "app", "v1"); err != nil {
		t.Fatal(err)
	}
	st = status("repository=app&reference=v1")
	if !st.Deleted || st.Complete || states(st) != "eastus=deleted westeurope=unknown" || st.Regions[1].Error == "" {
		t.Fatalf("after a delete, westeurope down: %+v", st)
	}
}

// TestWithAuthAReplicaEndpointIsHTTPS: a region whose peers must talk
// over TLS refuses to register a replica at a plain http endpoint, and
// takes an https one.
func TestWithAuthAReplicaEndpointIsHTTPS(t *testing.T) {
	r, err := region.Open(t.Context(), region.Config{Name: "eastus", DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	api := mgmtapi.New(r, nil, nil)
	api.SetPeersTLS(true)
	api.Register(mux)
	t.Cleanup(func() { srv.Close(); r.Close() })
	if code, body := call(t, "PUT", srv.URL+"/_georeg/v1/replications/brazilsouth", `{"endpoint":"http://10.0.0.9:5001"}`); code != 400 || codeOf(body) != "MANIFEST_INVALID" || !strings.Contains(string(body), "TLS") {
		t.Fatalf("an http replica: %d %s", code, body)
	}
	if code, body := call(t, "PUT", srv.URL+"/_georeg/v1/replications/brazilsouth", `{"endpoint":"https://10.0.0.9:5001"}`); code != 200 {
		t.Fatalf("an https replica: %d %s", code, body)
	}
}

// TestTheAPIRefusesWhatABrowserSendsFromAnotherSite: through the API's
// own handlers, a text/plain body is 415 and a change from another
// Origin is 403, and neither changes anything.
func TestTheAPIRefusesWhatABrowserSendsFromAnotherSite(t *testing.T) {
	r, base := serveAPI(t)
	send := func(contentType, origin string) int {
		req, _ := http.NewRequest(http.MethodPut, base+"/_georeg/v1/replications/brazilsouth", strings.NewReader(`{"endpoint":"`+unreachable+`"}`))
		req.Header.Set("Content-Type", contentType)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send("text/plain", ""); code != http.StatusUnsupportedMediaType {
		t.Fatalf("a text/plain body: %d", code)
	}
	if code := send("application/json", "https://evil.example"); code != http.StatusForbidden {
		t.Fatalf("a change from another origin: %d", code)
	}
	if _, err := r.Setting(t.Context(), "replica", "brazilsouth"); err == nil {
		t.Fatal("a refused request registered the replica")
	}
}
