package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// randomLayer writes a tar with one file of n random bytes.
func randomLayer(t *testing.T, n int) string {
	t.Helper()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "random.bin", Mode: 0o644, Size: int64(n)})
	_, _ = tw.Write(data)
	_ = tw.Close()
	p := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCrane(t *testing.T) {
	s := startServer(t, t.TempDir())
	reg := s.addr
	layer := randomLayer(t, 3<<20)
	run(t, "crane", "append", "--insecure", "--oci-empty-base", "-f", layer, "-t", reg+"/crane/app:v1")
	d1 := strings.TrimSpace(run(t, "crane", "digest", "--insecure", reg+"/crane/app:v1"))

	t.Run("pull gives back the pushed image", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "img")
		run(t, "crane", "pull", "--insecure", "--format", "oci", reg+"/crane/app:v1", out)
		idx, err := os.ReadFile(filepath.Join(out, "index.json"))
		if err != nil || !strings.Contains(string(idx), d1) {
			t.Fatalf("pulled index %s lacks %s (%v)", idx, d1, err)
		}
	})
	t.Run("copy to another repository keeps the digest", func(t *testing.T) {
		run(t, "crane", "copy", "--insecure", reg+"/crane/app:v1", reg+"/crane/copy:v1")
		if d := strings.TrimSpace(run(t, "crane", "digest", "--insecure", reg+"/crane/copy:v1")); d != d1 {
			t.Fatalf("copy digest %s, want %s", d, d1)
		}
	})
	t.Run("tag, ls and catalog", func(t *testing.T) {
		run(t, "crane", "tag", "--insecure", reg+"/crane/app:v1", "stable")
		if got := run(t, "crane", "ls", "--insecure", reg+"/crane/app"); got != "stable\nv1\n" {
			t.Fatalf("ls: %q", got)
		}
		if got := run(t, "crane", "catalog", "--insecure", reg); got != "crane/app\ncrane/copy\n" {
			t.Fatalf("catalog: %q", got)
		}
	})
	t.Run("delete removes the manifest and its tags", func(t *testing.T) {
		run(t, "crane", "delete", "--insecure", reg+"/crane/copy@"+d1)
		if out, err := runErr(t, "crane", "digest", "--insecure", reg+"/crane/copy:v1"); err == nil || !strings.Contains(out, "MANIFEST_UNKNOWN") {
			t.Fatalf("after delete: %v %s", err, out)
		}
	})
}

func TestRegctl(t *testing.T) {
	s := startServer(t, t.TempDir())
	reg := s.addr
	host := "--host=reg=" + reg + ",tls=disabled"
	run(t, "crane", "append", "--insecure", "--oci-empty-base", "-f", randomLayer(t, 1<<20), "-t", reg+"/rc/base:v1")

	t.Run("image copy", func(t *testing.T) {
		run(t, "regctl", host, "image", "copy", reg+"/rc/base:v1", reg+"/rc/copied:v1")
		a := run(t, "regctl", host, "image", "digest", reg+"/rc/base:v1")
		b := run(t, "regctl", host, "image", "digest", reg+"/rc/copied:v1")
		if a != b {
			t.Fatalf("digests differ: %s %s", a, b)
		}
	})
	t.Run("artifact put with a subject shows up in artifact list and tree", func(t *testing.T) {
		sbom := filepath.Join(t.TempDir(), "sbom.json")
		_ = os.WriteFile(sbom, []byte(`{"sbom":true}`), 0o644)
		run(t, "regctl", host, "artifact", "put", "--subject", reg+"/rc/base:v1",
			"--artifact-type", "application/vnd.example.sbom", "--file", sbom, "--file-media-type", "application/json")
		list := run(t, "regctl", host, "artifact", "list", reg+"/rc/base:v1", "--format", "{{json .}}")
		if !strings.Contains(list, "application/vnd.example.sbom") {
			t.Fatalf("artifact list lacks the sbom: %s", list)
		}
		filtered := run(t, "regctl", host, "artifact", "list", reg+"/rc/base:v1", "--filter-artifact-type", "application/vnd.example.other", "--format", "{{json .}}")
		if strings.Contains(filtered, "application/vnd.example.sbom") {
			t.Fatalf("filter kept the sbom: %s", filtered)
		}
		tree := run(t, "regctl", host, "artifact", "tree", reg+"/rc/base:v1")
		if !strings.Contains(tree, "application/vnd.example.sbom") {
			t.Fatalf("artifact tree lacks the sbom: %s", tree)
		}
	})
}

func TestSkopeo(t *testing.T) {
	s := startServer(t, t.TempDir())
	reg := s.addr
	// An oci-archive to copy in: a tarred OCI layout of a random image.
	src := reg + "/sk/src:v1"
	run(t, "crane", "append", "--insecure", "--oci-empty-base", "-f", randomLayer(t, 2<<20), "-t", src)
	layout := filepath.Join(t.TempDir(), "layout")
	run(t, "crane", "pull", "--insecure", "--format", "oci", src, layout)
	archive := filepath.Join(t.TempDir(), "in.tar")
	run(t, "tar", "-C", layout, "-cf", archive, ".")

	for _, format := range []string{"oci", "v2s2"} {
		t.Run("an oci-archive in and out as "+format, func(t *testing.T) {
			dst := reg + "/sk/" + format + ":v1"
			run(t, "skopeo", "copy", "--dest-tls-verify=false", "--format", format, "oci-archive:"+archive, "docker://"+dst)
			mt := run(t, "crane", "manifest", "--insecure", dst)
			want := map[string]string{"oci": "application/vnd.oci.image.manifest.v1+json", "v2s2": "application/vnd.docker.distribution.manifest.v2+json"}[format]
			if !strings.Contains(mt, want) {
				t.Fatalf("stored manifest is not %s: %s", want, mt)
			}
			out := filepath.Join(t.TempDir(), "out.tar")
			run(t, "skopeo", "copy", "--src-tls-verify=false", "docker://"+dst, "oci-archive:"+out)
			fi, err := os.Stat(out)
			if err != nil || fi.Size() < 2<<20 {
				t.Fatalf("archive out: %v %v", fi, err)
			}
		})
	}
}

func TestContainerdPull(t *testing.T) {
	s := startServer(t, t.TempDir())
	ref := s.addr + "/ctr/app:v1"
	run(t, "crane", "append", "--insecure", "-f", randomLayer(t, 1<<20), "-t", ref)
	sock := startContainerd(t)
	run(t, "ctr", "--address", sock, "images", "pull", "--plain-http", ref)
	if out := run(t, "ctr", "--address", sock, "images", "ls", "-q"); !strings.Contains(out, ref) {
		t.Fatalf("ctr images ls: %s", out)
	}
}

// startContainerd runs a private containerd (its own root, state and
// socket, no CRI) until the test ends and returns its socket.
func startContainerd(t *testing.T) string {
	t.Helper()
	ctrd, err := exec.LookPath("containerd")
	if err != nil {
		t.Fatal("containerd is not installed (make test installs it)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "containerd.sock")
	cfg := filepath.Join(dir, "config.toml")
	_ = os.WriteFile(cfg, []byte(`version = 2
root = "`+dir+`/root"
state = "`+dir+`/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "`+sock+`"
[ttrpc]
  address = "`+sock+`.ttrpc"
`), 0o644)
	cmd := exec.Command(ctrd, "--config", cfg)
	logf, _ := os.Create(filepath.Join(dir, "containerd.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := runErr(t, "ctr", "--address", sock, "version"); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatal("containerd did not start within 15s")
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}
}
