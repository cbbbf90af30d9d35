package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/transfer"
)

// pushIndex pushes a two-platform index app:multi (each platform its own
// image) and an artifact referring to it, to the registry at addr; it
// returns every manifest and blob digest it pushed.
func pushIndex(t *testing.T, addr, repo string) (index digest.Digest, all []digest.Digest) {
	t.Helper()
	base := "http://" + addr + "/v2/" + repo
	put := func(b []byte) digest.Digest {
		d := digest.FromBytes(b)
		if code, _ := status(t, "POST", base+"/blobs/uploads/?digest="+d.String(), nil, b); code != 201 {
			t.Fatalf("blob: %d", code)
		}
		all = append(all, d)
		return d
	}
	manifest := func(ref, mediaType string, m []byte) digest.Digest {
		if code, _ := status(t, "PUT", base+"/manifests/"+ref, map[string]string{"Content-Type": mediaType}, m); code != 201 {
			t.Fatalf("manifest %s: %d", ref, code)
		}
		d := digest.FromBytes(m)
		all = append(all, d)
		return d
	}
	var children []string
	for _, arch := range []string{"amd64", "arm64"} {
		cfg := []byte(`{"architecture":"` + arch + `","os":"linux"}`)
		layer := bytes.Repeat([]byte("layer for "+arch+";"), 50_000)
		m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
			put(cfg), len(cfg), put(layer), len(layer)))
		d := manifest(digest.FromBytes(m).String(), "application/vnd.oci.image.manifest.v1+json", m)
		children = append(children, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"%s","os":"linux"}}`, d, len(m), arch))
	}
	idx := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(children, ",") + `]}`)
	index = manifest("multi", "application/vnd.oci.image.index.v1+json", idx)
	empty := []byte("{}")
	sig := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.signature","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[{"mediaType":"application/vnd.example.signature","digest":"%s","size":%d}],"subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%d}}`,
		put(empty), put([]byte("signature bytes")), len("signature bytes"), index, len(idx)))
	manifest(digest.FromBytes(sig).String(), "application/vnd.oci.image.manifest.v1+json", sig)
	return index, all
}

// present reports whether addr serves d in repo with the same bytes'
// digest (a manifest or a blob).
func present(t *testing.T, addr, repo string, d digest.Digest) error {
	for _, kind := range []string{"manifests", "blobs"} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v2/"+repo+"/"+kind+"/"+d.String(), nil)
		req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			if digest.FromBytes(b) != d {
				return fmt.Errorf("%s of %s is served with other bytes", d, repo)
			}
			return nil
		}
	}
	return fmt.Errorf("%s is not in %s at %s", d, repo, addr)
}

// TestImportFromGeoregAndFromCraneRegistry imports, server side, a
// two-platform index with its referrer from another georeg, and an image
// from `crane registry serve`, and checks them digest by digest; a second
// import of the same image fetches nothing.
func TestImportFromGeoregAndFromCraneRegistry(t *testing.T) {
	target := startServer(t, t.TempDir())
	source := startServer(t, t.TempDir())
	reg := "http://" + target.addr
	index, all := pushIndex(t, source.addr, "src/app")

	out := georeg(t, "import", "--registry", reg, "--source", "http://"+source.addr+"/src/app:multi", "--image", "imported/app:v1",
		"--referrers", "--output", "json")
	var job transfer.Job
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &job); err != nil || job.State != transfer.Succeeded {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if job.Digest != index.String() || job.Manifests != 4 || job.Blobs != 6 {
		t.Fatalf("job: %+v", job)
	}
	for _, d := range all {
		if err := present(t, target.addr, "imported/app", d); err != nil {
			t.Error(err)
		}
	}
	if got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", target.addr+"/imported/app:v1")); got != index.String() {
		t.Fatalf("imported/app:v1 is %s, want %s", got, index)
	}
	// Again, into another repository: every blob is here already.
	if err := json.Unmarshal([]byte(trimToJSON(georeg(t, "import", "--registry", reg, "--source", "http://"+source.addr+"/src/app@"+index.String(),
		"--image", "again/app", "--output", "json"))), &job); err != nil || job.State != transfer.Succeeded || job.Reused != job.Blobs {
		t.Fatalf("second import: %v %+v", err, job)
	}
	// Importing what a tag holds again needs no --force: nothing changes.
	if out, err := runErr(t, georegBin, "import", "--registry", reg, "--source", "http://"+source.addr+"/src/app:multi", "--image", "imported/app:v1"); err != nil {
		t.Fatalf("import of the digest the tag already holds: %v\n%s", err, out)
	}
	// Without --force a tag holding another digest is not overwritten;
	// with it, it is.
	other := pushImage(t, source.addr, "src/app", "other", "another image")
	if out, err := runErr(t, georegBin, "import", "--registry", reg, "--source", "http://"+source.addr+"/src/app:other", "--image", "imported/app:v1"); err == nil || !strings.Contains(out, "ALREADY_EXISTS") {
		t.Fatalf("import over an existing tag: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", target.addr+"/imported/app:v1")); got != index.String() {
		t.Fatalf("a refused import changed imported/app:v1 to %s", got)
	}
	georeg(t, "import", "--registry", reg, "--source", "http://"+source.addr+"/src/app:other", "--image", "imported/app:v1", "--force")
	if got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", target.addr+"/imported/app:v1")); got != other.String() {
		t.Fatalf("import --force left imported/app:v1 at %s, want %s", got, other)
	}

	// From crane's registry.
	craneAddr := freeAddr(t)
	crane, err := exec.LookPath("crane")
	if err != nil {
		t.Fatalf("crane is not installed (make test installs it): %v", err)
	}
	cmd := exec.Command(crane, "registry", "serve", "--address", craneAddr)
	logf, _ := os.Create(filepath.Join(t.TempDir(), "crane.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	waitFor(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + craneAddr + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	layer := randomLayer(t, 2<<20)
	run(t, "crane", "append", "--insecure", "--oci-empty-base", "-f", layer, "-t", craneAddr+"/from/crane:v1")
	want := strings.TrimSpace(run(t, "crane", "digest", "--insecure", craneAddr+"/from/crane:v1"))
	if err := json.Unmarshal([]byte(trimToJSON(georeg(t, "import", "--registry", reg, "--source", craneAddr+"/from/crane:v1", "--output", "json"))), &job); err != nil || job.State != transfer.Succeeded {
		t.Fatalf("import from crane: %v %+v", err, job)
	}
	if got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", target.addr+"/from/crane:v1")); got != want {
		t.Fatalf("from/crane:v1 is %s, want %s", got, want)
	}
	var m struct {
		Layers, Config []struct{ Digest digest.Digest }
	}
	raw := run(t, "crane", "manifest", "--insecure", craneAddr+"/from/crane:v1")
	_ = json.Unmarshal([]byte(raw), &m)
	var cfg struct {
		Config struct{ Digest digest.Digest }
	}
	_ = json.Unmarshal([]byte(raw), &cfg)
	for _, d := range append([]digest.Digest{cfg.Config.Digest}, func() (ds []digest.Digest) {
		for _, l := range m.Layers {
			ds = append(ds, l.Digest)
		}
		return
	}()...) {
		if err := present(t, target.addr, "from/crane", d); err != nil {
			t.Error(err)
		}
	}
	if out, err := runErr(t, georegBin, "import", "--registry", reg, "--source", "not a reference"); err == nil || !strings.Contains(out, "REQUEST_INVALID") {
		t.Fatalf("a bad source: %v\n%s", err, out)
	}
}

// trimToJSON drops what precedes the JSON (the progress bar goes to
// stderr, which run merges).
func trimToJSON(s string) string {
	if i := strings.Index(s, "{\n"); i >= 0 {
		return s[i:]
	}
	return s
}
