package up_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/up"
)

// TestTheCachePullsThroughAnUpstreamThatWantsBearerTokens: the upstream
// is another registry with authentication on (georeg's own: a 401 with a
// Bearer challenge, a token endpoint that takes basic credentials, tokens
// scoped to a repository), as Docker Hub, ghcr.io and quay.io are. A
// credential set with a token that may read vendor/app pulls it through
// the cache by tag; the same set cannot read vendor/secret (DENIED,
// naming the rule), nor can a wrong password.
func TestTheCachePullsThroughAnUpstreamThatWantsBearerTokens(t *testing.T) {
	dir := t.TempDir()
	upstreamReg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions()[:1], Auth: true})
	upURL := upstreamReg.Regions[0].URL
	upHost := strings.TrimPrefix(upURL, "http://")
	adminPass, err := up.LoadAdminPassword(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin := basic("admin", adminPass)
	putJSON := func(url string, body any) []byte {
		t.Helper()
		code, _, out := call(t, http.DefaultClient, http.MethodPut, url, admin, body)
		if code != 200 {
			t.Fatalf("PUT %s: %d %s", url, code, out)
		}
		return out
	}
	putJSON(upURL+"/_georeg/v1/scope-maps/vendor-app-readers", auth.ScopeMap{Actions: []string{"repositories/vendor/app/content/read"}})
	var created mgmtapi.TokenCreated
	if err := json.Unmarshal(putJSON(upURL+"/_georeg/v1/tokens/puller", mgmtapi.TokenBody{ScopeMap: ptr("vendor-app-readers")}), &created); err != nil {
		t.Fatal(err)
	}
	pushed := map[string]digest.Digest{}
	for _, repo := range []string{"vendor/app", "vendor/secret"} {
		img, err := random.Image(30_000, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(upHost+"/"+repo+":1.0", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		// go-containerregistry follows the Bearer challenge with the
		// admin's basic credentials, as docker login would.
		if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "admin", Password: adminPass})); err != nil {
			t.Fatalf("push %s to the upstream: %v", repo, err)
		}
		d, _ := img.Digest()
		pushed[repo] = digest.Digest(d.String())
	}
	if code, hdr, _ := do(t, http.MethodGet, upURL+"/v2/vendor/app/manifests/1.0", "", nil); code != 401 || !strings.HasPrefix(hdr.Get("Www-Authenticate"), "Bearer ") {
		t.Fatalf("the upstream answers an anonymous pull %d %q, want 401 with a Bearer challenge", code, hdr.Get("Www-Authenticate"))
	}

	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()[:2]})
	east := reg.ByName["eastus"].URL
	put := func(path, body string) {
		t.Helper()
		if code, _, out := do(t, http.MethodPut, east+path, "application/json", []byte(body)); code != 200 {
			t.Fatalf("PUT %s: %d %s", path, code, out)
		}
	}
	put("/_georeg/v1/credential-sets/vendor", `{"loginServer":"`+upHost+`","username":"puller","password":"`+created.Password+`"}`)
	put("/_georeg/v1/credential-sets/wrong", `{"loginServer":"`+upHost+`","username":"puller","password":"not-the-password"}`)
	put("/_georeg/v1/cache-rules/vendor", `{"source":"http://`+upHost+`/vendor/*","target":"mirror/*","credentialSet":"vendor"}`)
	put("/_georeg/v1/cache-rules/wrong", `{"source":"http://`+upHost+`/vendor/app","target":"wrong/app","credentialSet":"wrong"}`)
	// A Docker image (random.Image's media type): asked for as docker does.
	pull := func(url string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	code, body := pull(east + "/v2/mirror/app/manifests/1.0")
	if code != 200 || digest.FromBytes(body) != pushed["vendor/app"] {
		t.Fatalf("a pull through the cache from an upstream with bearer tokens: %d %s", code, body)
	}
	var m struct {
		Layers []struct{ Digest digest.Digest }
	}
	if err := json.Unmarshal(body, &m); err != nil || len(m.Layers) != 2 {
		t.Fatalf("the manifest: %v %s", err, body)
	}
	for _, l := range m.Layers {
		if code, _, b := do(t, http.MethodGet, east+"/v2/mirror/app/blobs/"+l.Digest.String(), "", nil); code != 200 || digest.FromBytes(b) != l.Digest {
			t.Fatalf("layer %s: %d, %d bytes", l.Digest, code, len(b))
		}
	}
	// westeurope gets it too (replicated, or read through).
	eventually(t, 30*time.Second, func() error {
		if code, b := pull(reg.ByName["westeurope"].URL + "/v2/mirror/app/manifests/1.0"); code != 200 || digest.FromBytes(b) != pushed["vendor/app"] {
			return fmt.Errorf("westeurope: %d", code)
		}
		return nil
	})
	for _, c := range []struct{ path, why string }{
		{"/v2/mirror/secret/manifests/1.0", "a repository the token may not read"},
		{"/v2/wrong/app/manifests/1.0", "a wrong password"},
	} {
		code, body := pull(east + c.path)
		if code != 403 || !strings.Contains(string(body), "DENIED") || !strings.Contains(string(body), "cache rule") {
			t.Fatalf("%s: %d %s, want 403 DENIED naming the cache rule", c.why, code, body)
		}
	}
}
