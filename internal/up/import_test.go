package up_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/transfer"
	"github.com/georeg/georeg/internal/up"
)

// TestImportFromARegistryThatNeedsCredentials: a region imports from a
// registry with token auth on, logging in with the token credentials the
// import request carries; without them, or with wrong ones, the import
// fails saying the source refused it.
func TestImportFromARegistryThatNeedsCredentials(t *testing.T) {
	dir := t.TempDir()
	source := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions()[:1], Auth: true})
	src := source.Regions[0].URL
	adminPass, err := up.LoadAdminPassword(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin := basic("admin", adminPass)
	if code, _, out := call(t, http.DefaultClient, http.MethodPut, src+"/_georeg/v1/scope-maps/pullers", admin, auth.ScopeMap{Actions: []string{"repositories/private/*/content/read"}}); code != 200 {
		t.Fatalf("scope map: %d %s", code, out)
	}
	var created mgmtapi.TokenCreated
	code, _, out := call(t, http.DefaultClient, http.MethodPut, src+"/_georeg/v1/tokens/importer", admin, mgmtapi.TokenBody{ScopeMap: ptr("pullers")})
	if code != 200 || json.Unmarshal(out, &created) != nil {
		t.Fatalf("token: %d %s", code, out)
	}
	// Pushed with an admin token, as a client would.
	pushAuthed(t, src, "private/app", "v1", "Bearer "+tokenFor(t, src, "admin", adminPass, "repository:private/app:pull,push"))

	target := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()[1:2]}).Regions[0].URL
	run := func(req transfer.Request) transfer.Job {
		t.Helper()
		var job transfer.Job
		code, _, out := call(t, http.DefaultClient, http.MethodPost, target+"/_georeg/v1/imports", "", req)
		if code != 200 && code != 202 || json.Unmarshal(out, &job) != nil {
			t.Fatalf("start import: %d %s", code, out)
		}
		eventually(t, 30*time.Second, func() error {
			code, _, out := call(t, http.DefaultClient, http.MethodGet, target+"/_georeg/v1/imports/"+job.ID, "", nil)
			if code != 200 || json.Unmarshal(out, &job) != nil {
				return fmt.Errorf("job: %d %s", code, out)
			}
			if job.State == transfer.Running {
				return fmt.Errorf("still running")
			}
			return nil
		})
		return job
	}
	host := strings.TrimPrefix(src, "http://")
	for name, req := range map[string]transfer.Request{
		"without credentials":   {Source: "http://" + host + "/private/app:v1"},
		"with a wrong password": {Source: "http://" + host + "/private/app:v1", Username: "importer", Password: "not-its-password"},
	} {
		if job := run(req); job.State != transfer.Failed || !strings.Contains(job.Error, "UNAUTHORIZED") {
			t.Errorf("import %s: %s %q, want failed, the source's UNAUTHORIZED", name, job.State, job.Error)
		}
	}
	job := run(transfer.Request{Source: "http://" + host + "/private/app:v1", Username: "importer", Password: created.Password})
	if job.State != transfer.Succeeded {
		t.Fatalf("import with the token: %s %s", job.State, job.Error)
	}
	if code, _, body := do(t, http.MethodGet, target+"/v2/private/app/manifests/v1", "", nil); code != 200 {
		t.Fatalf("the imported image: %d %s", code, body)
	}
}

// pushAuthed pushes a one-layer image to base as repo:tag, each request
// carrying authz.
func pushAuthed(t *testing.T, base, repo, tag, authz string) {
	t.Helper()
	send := func(method, u, ctype string, body []byte, want int) {
		req, _ := http.NewRequest(method, u, bytes.NewReader(body))
		req.Header.Set("Authorization", authz)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, b)
		}
	}
	cfg, layer := []byte(`{"image":"`+repo+`"}`), bytes.Repeat([]byte("private layer;"), 10_000)
	for _, b := range [][]byte{cfg, layer} {
		send(http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), "", b, 201)
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer))
	send(http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", []byte(m), 201)
}
