package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The clients docs/design.md names, against `georeg up` as users reach it:
// each pushes through the front door (127.0.0.1:5000) and reads back from
// another region's own port.

// runIn runs a client command in dir with env added and returns its
// output; a missing binary or a failure fails the test.
func runIn(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (make tools installs it): %v", name, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	done := make(chan struct{})
	timer := time.AfterFunc(2*time.Minute, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		close(done)
	})
	out, err := cmd.CombinedOutput()
	if !timer.Stop() {
		<-done
	}
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// eventuallyRun retries a client command until it succeeds and its
// output holds want (the content is on its way to that region), within a
// bound.
func eventuallyRun(t *testing.T, dir string, env []string, want, name string, args ...string) string {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err == nil && strings.Contains(string(out), want) {
			return string(out)
		}
		last = string(out)
		time.Sleep(100 * time.Millisecond) // poll interval of a bounded wait
	}
	t.Fatalf("%s %s never succeeded: %s", name, strings.Join(args, " "), last)
	return ""
}

func TestOrasHelmAndDockerThroughTheFrontDoor(t *testing.T) {
	startUp(t)
	west, asia := upRegions["westeurope"], upRegions["southeastasia"]
	dir := t.TempDir()
	env := []string{"HOME=" + dir, "DOCKER_CONFIG=" + filepath.Join(dir, ".docker"), "HELM_CONFIG_HOME=" + filepath.Join(dir, "helm"),
		"HELM_CACHE_HOME=" + filepath.Join(dir, "helm-cache"), "HELM_DATA_HOME=" + filepath.Join(dir, "helm-data")}

	t.Run("oras push, attach, discover, pull from another region", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, "sbom.json"), []byte(`{"sbom":"through the door"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "artifact.txt"), []byte("an artifact pushed with oras"), 0o644); err != nil {
			t.Fatal(err)
		}
		ref := upDoor + "/oras/app:v1"
		runIn(t, dir, env, "oras", "push", "--plain-http", "--artifact-type", "application/vnd.georeg.test", ref, "artifact.txt:text/plain")
		runIn(t, dir, env, "oras", "attach", "--plain-http", "--artifact-type", "application/vnd.georeg.sbom", ref, "sbom.json:application/json")
		// The referrer is listed through the door and by each region.
		for _, at := range []string{upDoor, west, asia} {
			out := eventuallyRun(t, dir, env, "application/vnd.georeg.sbom", "oras", "discover", "--plain-http", "--format", "json", at+"/oras/app:v1")
			if !strings.Contains(out, "application/vnd.georeg.sbom") {
				t.Fatalf("oras discover at %s lists no sbom: %s", at, out)
			}
		}
		pulled := filepath.Join(dir, "pulled")
		eventuallyRun(t, dir, env, "", "oras", "pull", "--plain-http", "-o", pulled, asia+"/oras/app:v1")
		if b, err := os.ReadFile(filepath.Join(pulled, "artifact.txt")); err != nil || string(b) != "an artifact pushed with oras" {
			t.Fatalf("pulled from southeastasia: %q %v", b, err)
		}
	})

	t.Run("helm push through the door, pull from another region", func(t *testing.T) {
		runIn(t, dir, env, "helm", "create", "georegchart")
		runIn(t, dir, env, "helm", "package", "georegchart")
		out := runIn(t, dir, env, "helm", "push", "georegchart-0.1.0.tgz", "oci://"+upDoor+"/charts", "--plain-http")
		if !strings.Contains(out, "Digest:") {
			t.Fatalf("helm push: %s", out)
		}
		into := filepath.Join(dir, "charts-pulled")
		if err := os.MkdirAll(into, 0o755); err != nil {
			t.Fatal(err)
		}
		eventuallyRun(t, dir, env, "", "helm", "pull", "oci://"+west+"/charts/georegchart", "--version", "0.1.0", "--plain-http", "-d", into)
		if _, err := os.Stat(filepath.Join(into, "georegchart-0.1.0.tgz")); err != nil {
			t.Fatalf("helm pull from westeurope: %v", err)
		}
	})

	t.Run("docker manifest inspect", func(t *testing.T) {
		layer := randomLayer(t, 64<<10)
		run(t, "crane", "append", "--insecure", "--oci-empty-base", "-f", layer, "-t", upDoor+"/docker/app:v1")
		want := strings.TrimSpace(run(t, "crane", "digest", "--insecure", upDoor+"/docker/app:v1"))
		for _, at := range []string{upDoor, west} {
			out := eventuallyRun(t, dir, env, want, "docker", "manifest", "inspect", "--insecure", "--verbose", at+"/docker/app:v1")
			var got struct {
				Descriptor struct{ Digest string }
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil || got.Descriptor.Digest != want {
				t.Fatalf("docker manifest inspect at %s: digest %q, want %s (%v)\n%s", at, got.Descriptor.Digest, want, err, out)
			}
		}
	})
}
