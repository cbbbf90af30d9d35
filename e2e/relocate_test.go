package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// blobGETs reads how many blob GETs answered 200 at addr (its metrics).
func blobGETs(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`georeg_http_requests_total\{code="200",method="GET",region="eastus",route="blob"\} (\d+)`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestRelocateARegistry: config export (no secret in it), copy of every
// repository (each blob fetched once, verified, resumable), config apply
// on the new registry, as docs/relocate.md tells.
func TestRelocateARegistry(t *testing.T) {
	old, neu := startServer(t, t.TempDir()), startServer(t, t.TempDir())
	from, to := "http://"+old.addr, "http://"+neu.addr
	for _, img := range [][3]string{{"team/a", "v1", "one"}, {"team/a", "v2", "two"}, {"team/b", "v1", "one"}, {"other/c", "v1", "three"}} {
		pushImage(t, old.addr, img[0], img[1], img[2])
	}
	g := func(args ...string) string { return georeg(t, args...) }
	g("webhook", "create", "--registry", from, "--name", "relohook", "--uri", "http://127.0.0.1:9/hook", "--actions", "push",
		"--headers", "Authorization=Bearer s3cr3t-header", "--secret", "s3cr3t-signing")
	g("scope-map", "create", "readers", "--repository", "team/*=content/read", "--registry", from)
	g("token", "create", "ci-bot", "--scope-map", "readers", "--registry", from)
	g("config", "retention", "update", "--status", "enabled", "--days", "5", "--registry", from)
	g("repository", "update", "--name", "team/a", "--image", "v1", "--write-enabled", "false", "--registry", from)

	exported := g("config", "export", "--registry", from)
	for _, secret := range []string{"s3cr3t-header", "s3cr3t-signing", "passwordHash", "$2a$"} {
		if strings.Contains(exported, secret) {
			t.Fatalf("the export holds a secret (%s):\n%s", secret, exported)
		}
	}
	for _, want := range []string{"relohook", "${GEOREG_WEBHOOK_RELOHOOK_SECRET}", "${GEOREG_WEBHOOK_RELOHOOK_HEADER_AUTHORIZATION}", "readers", "name: ci-bot", "days: 5", "team/a:v1"} {
		if !strings.Contains(exported, want) {
			t.Fatalf("the export lacks %q:\n%s", want, exported)
		}
	}
	file := filepath.Join(t.TempDir(), "registry.yaml")
	if err := os.WriteFile(file, []byte(exported), 0o644); err != nil {
		t.Fatal(err)
	}

	before := blobGETs(t, old.addr)
	out := g("copy", "--from", from, "--to", to, "--repos", "team/*")
	if !strings.Contains(out, "copied 2 repositories, 3 tags (3 copied now, 0 already there); all 3 verified by digest (3 manifests, 6 blobs)") {
		t.Fatalf("copy:\n%s", out)
	}
	// team/a:v1 and team/b:v1 share both blobs; team/a:v2 has two of its
	// own: four distinct blobs, each fetched once.
	if got := blobGETs(t, old.addr) - before; got != 4 {
		t.Fatalf("the copy fetched %d blobs from the old registry, want 4 (each once)", got)
	}
	if out, err := runErr(t, georegBin, "copy", "--from", from, "--to", to, "--repos", "nothing/*"); err == nil || !strings.Contains(out, "nothing to copy") {
		t.Fatalf("a pattern that matches nothing: %v\n%s", err, out)
	}
	// An index of two platforms with a signature on it, copied with its
	// referrers: the resumed copy adds other/c and multi/app.
	index, all := pushIndex(t, old.addr, "multi/app")
	out = g("copy", "--from", from, "--to", to, "--referrers")
	if !strings.Contains(out, "copied 4 repositories, 5 tags (2 copied now, 3 already there); all 5 verified by digest (8 manifests, 14 blobs)") {
		t.Fatalf("second copy (resumes, adds other/c and multi/app):\n%s", out)
	}
	// Checked here too, not only by the copy's own report: every manifest
	// and blob pushed is at the target with the same bytes.
	for _, d := range all {
		if err := present(t, neu.addr, "multi/app", d); err != nil {
			t.Errorf("after the copy: %v", err)
		}
	}
	for _, img := range [][2]string{{"team/a", "v1"}, {"team/a", "v2"}, {"team/b", "v1"}, {"other/c", "v1"}, {"multi/app", "multi"}} {
		src, dst := manifestDigest(t, old.addr, img[0], img[1]), manifestDigest(t, neu.addr, img[0], img[1])
		if src != dst || (img[1] == "multi" && src != index) {
			t.Errorf("%s:%s is %s at the target, %s at the source", img[0], img[1], dst, src)
		}
	}

	env := newClientEnv(t, "")
	env = append(env, "GEOREG_WEBHOOK_RELOHOOK_SECRET=s3cr3t-signing", "GEOREG_WEBHOOK_RELOHOOK_HEADER_AUTHORIZATION=Bearer s3cr3t-header")
	out = env.must(t, georegBin, "config", "apply", "-f", file, "--registry", to)
	if !strings.Contains(out, "token ci-bot: new password") || !strings.Contains(out, "applied") {
		t.Fatalf("apply:\n%s", out)
	}
	if cfg := g("webhook", "get-config", "relohook", "--registry", to); !strings.Contains(cfg, "Bearer s3cr3t-header") {
		t.Fatalf("the webhook's header did not move:\n%s", cfg)
	}
	var tags []struct {
		Name       string
		Attributes struct{ WriteEnabled bool } `json:"changeableAttributes"`
	}
	if err := json.Unmarshal([]byte(g("repository", "show-tags", "--name", "team/a", "--registry", to, "--output", "json")), &tags); err != nil || len(tags) != 2 || tags[0].Attributes.WriteEnabled {
		t.Fatalf("the lock did not move: %v %+v", err, tags)
	}
	again := g("config", "export", "--registry", to)
	for _, want := range []string{"relohook", "readers", "name: ci-bot", "days: 5", "team/a:v1"} {
		if !strings.Contains(again, want) {
			t.Fatalf("the new registry's export lacks %q:\n%s", want, again)
		}
	}
}

// manifestDigest GETs repo:tag at addr and returns the digest of its bytes.
func manifestDigest(t *testing.T, addr, repo, tag string) digest.Digest {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s:%s at %s: %d", repo, tag, addr, resp.StatusCode)
	}
	return digest.FromBytes(b)
}
