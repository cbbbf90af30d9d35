package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
