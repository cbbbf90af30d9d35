package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestClientsPullThroughTheCache: an upstream (`crane registry serve`)
// holds library/app:v1 and library/tool:v1. With a cache rule
// (library/* to mirror/library/*), containerd pulls library/app through
// georeg configured as the upstream's mirror in a hosts.toml (its
// requests carry ?ns=UPSTREAM), crane and skopeo pull
// mirror/library/tool from georeg by name; each image is stored in georeg
// and, the upstream stopped, still pulls from it.
func TestClientsPullThroughTheCache(t *testing.T) {
	upstream := freeAddr(t)
	crane := exec.Command("crane", "registry", "serve", "--address", upstream)
	if err := crane.Start(); err != nil {
		t.Fatalf("crane registry serve: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			_ = crane.Process.Kill()
			_ = crane.Wait()
			stopped = true
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + upstream + "/v2/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upstream did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
	run(t, "crane", "append", "--insecure", "-f", randomLayer(t, 1<<20), "-t", upstream+"/library/app:v1")
	run(t, "crane", "append", "--insecure", "-f", randomLayer(t, 1<<20), "-t", upstream+"/library/tool:v1")
	appDigest := strings.TrimSpace(run(t, "crane", "digest", "--insecure", upstream+"/library/app:v1"))
	toolDigest := strings.TrimSpace(run(t, "crane", "digest", "--insecure", upstream+"/library/tool:v1"))

	s := startServer(t, t.TempDir())
	rule := fmt.Sprintf(`{"source":"http://%s/library/*","target":"mirror/library/*"}`, upstream)
	if code, _ := status(t, "PUT", "http://"+s.addr+"/_georeg/v1/cache-rules/upstream", map[string]string{"Content-Type": "application/json"}, []byte(rule)); code != 200 {
		t.Fatalf("cache rule: %d", code)
	}

	// containerd, with georeg as the upstream's mirror.
	hosts := t.TempDir()
	if err := os.MkdirAll(filepath.Join(hosts, upstream), 0o755); err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", upstream, s.addr)
	if err := os.WriteFile(filepath.Join(hosts, upstream, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := startContainerd(t)
	run(t, "ctr", "--address", sock, "images", "pull", "--hosts-dir", hosts, upstream+"/library/app:v1")

	// crane and skopeo, by georeg's own name.
	if got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", s.addr+"/mirror/library/tool:v1")); got != toolDigest {
		t.Fatalf("crane through the cache: %s, want %s", got, toolDigest)
	}
	run(t, "skopeo", "copy", "--src-tls-verify=false", "docker://"+s.addr+"/mirror/library/tool:v1", "oci:"+filepath.Join(t.TempDir(), "tool"))

	// Stored: the upstream stopped, both still pull, with their digests.
	stop()
	for repo, want := range map[string]string{"mirror/library/app": appDigest, "mirror/library/tool": toolDigest} {
		if got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", s.addr+"/"+repo+":v1")); got != want {
			t.Fatalf("%s:v1 from georeg with the upstream gone: %s, want %s (the upstream's)", repo, got, want)
		}
		run(t, "crane", "pull", "--insecure", s.addr+"/"+repo+":v1", filepath.Join(t.TempDir(), "img.tar"))
	}
}

// TestPullThroughACacheOfADistributionRegistryBehindHtpasswd: the upstream
// is Debian's docker-registry (distribution 2.8) with htpasswd auth. A
// credential set with the right password pulls an image through georeg
// with the upstream's digest; one with a wrong password is refused,
// DENIED naming the rule and the upstream's answer.
func TestPullThroughACacheOfADistributionRegistryBehindHtpasswd(t *testing.T) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatal("docker-registry is not installed (make test installs Debian's package)")
	}
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("right-password"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("puller:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	upstream := freeAddr(t)
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\nauth:\n  htpasswd:\n    realm: upstream\n    path: %s\n",
		filepath.Join(dir, "data"), upstream, filepath.Join(dir, "htpasswd"))
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	reg.Stdout, reg.Stderr = logf, logf
	if err := reg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Process.Kill(); _ = reg.Wait(); logf.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + upstream + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				break // up, and asking for credentials
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
	layer := randomLayer(t, 1<<20)
	run(t, "bash", "-c", fmt.Sprintf("export DOCKER_CONFIG=%s && crane auth login --insecure %s -u puller -p right-password && crane append --insecure -f %s -t %s/library/app:v1",
		filepath.Join(dir, "docker"), upstream, layer, upstream))
	want := strings.TrimSpace(run(t, "bash", "-c", fmt.Sprintf("DOCKER_CONFIG=%s crane digest --insecure %s/library/app:v1", filepath.Join(dir, "docker"), upstream)))

	s := startServer(t, t.TempDir())
	base := "http://" + s.addr
	put := func(path, body string) {
		t.Helper()
		if code, _ := status(t, "PUT", base+path, map[string]string{"Content-Type": "application/json"}, []byte(body)); code != 200 {
			t.Fatalf("PUT %s: %d", path, code)
		}
	}
	put("/_georeg/v1/credential-sets/dist", fmt.Sprintf(`{"loginServer":%q,"username":"puller","password":"right-password"}`, upstream))
	put("/_georeg/v1/credential-sets/bad", fmt.Sprintf(`{"loginServer":%q,"username":"puller","password":"wrong-password"}`, upstream))
	put("/_georeg/v1/cache-rules/dist", fmt.Sprintf(`{"source":"http://%s/library/*","target":"dist/*","credentialSet":"dist"}`, upstream))
	put("/_georeg/v1/cache-rules/bad", fmt.Sprintf(`{"source":"http://%s/library/*","target":"bad/*","credentialSet":"bad"}`, upstream))

	if got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", s.addr+"/dist/app:v1")); got != want {
		t.Fatalf("through the cache: %s, want the upstream's %s", got, want)
	}
	run(t, "crane", "pull", "--insecure", s.addr+"/dist/app:v1", filepath.Join(t.TempDir(), "img.tar"))
	resp := httpDo(t, "GET", base+"/v2/bad/app/manifests/v1", nil, nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "DENIED") || !strings.Contains(string(body), "cache rule bad") {
		t.Fatalf("with a wrong password: %d %s, want 403 DENIED naming the rule", resp.StatusCode, body)
	}
}
