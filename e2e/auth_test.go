package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/tlsconf"
)

// authServer runs `georeg serve` with auth on and HTTPS from a local CA,
// and returns it with the CA file and the admin password.
func authServer(t *testing.T) (*server, string, string) {
	t.Helper()
	dir := t.TempDir()
	files, err := tlsconf.LocalCA(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	password := "admin-e2e-password"
	pwFile := filepath.Join(dir, "admin-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, data := freeAddr(t), filepath.Join(dir, "eastus")
	cfg := fmt.Sprintf(`region:
  name: eastus
  dataDir: %s
http:
  listen: %s
  tlsCert: %s
  tlsKey: %s
replication:
  secret: e2e-secret-0123456789abcdef0123456789
auth:
  enabled: true
  adminPasswordFile: %s
outbound:
  allow: [127.0.0.0/8]
log:
  level: warn
`, data, addr, files.Cert, files.Key, pwFile)
	file := filepath.Join(dir, "eastus.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, addr: addr, data: data, args: []string{"--config", file}, tlsCA: files.CA}
	s.start()
	t.Cleanup(s.kill)
	return s, files.CA, password
}

// clientEnv is one user's environment: a home, a docker config and trust
// in the test CA, kept across commands (a login persists).
type clientEnv []string

func newClientEnv(t *testing.T, ca string) clientEnv {
	home := t.TempDir()
	return clientEnv{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"), "SSL_CERT_FILE=" + ca, "GEOREG_CONFIG_DIR=" + filepath.Join(home, "georeg"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(home, "auth.json"), "XDG_RUNTIME_DIR=" + home}
}

// run runs a command in the environment; a missing binary fails the test.
func (e clientEnv) run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (make test installs it): %v", name, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), e...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e clientEnv) must(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := e.run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// TestClientsLogInAndPushAndPullOverTLS: georeg login stores the admin's
// credentials for crane; a writer token logs in with regctl, a reader
// token with skopeo; each can do what its scope map says, over HTTPS
// trusted through the local CA, and nothing more.
func TestClientsLogInAndPushAndPullOverTLS(t *testing.T) {
	s, ca, password := authServer(t)
	reg := s.addr
	base := "https://" + reg
	admin := newClientEnv(t, ca)
	admin.must(t, georegBin, "login", base, "-u", "admin", "-p", password)
	// crane reads the docker config georeg login wrote.
	layer := randomLayer(t, 1<<20)
	admin.must(t, "crane", "append", "--oci-empty-base", "-f", layer, "-t", reg+"/app/web:v1")
	digest := strings.TrimSpace(admin.must(t, "crane", "digest", reg+"/app/web:v1"))
	if out, err := newClientEnv(t, ca).run(t, "crane", "digest", reg+"/app/web:v1"); err == nil || !strings.Contains(out, "UNAUTHORIZED") {
		t.Fatalf("crane without credentials: %v %s", err, out)
	}

	admin.must(t, georegBin, "scope-map", "create", "writers", "--repository", "app/*=content/read,content/write", "--registry", base)
	admin.must(t, georegBin, "scope-map", "create", "readers", "--repository", "app/*=content/read", "--registry", base)
	tokens := map[string]string{}
	for name, sm := range map[string]string{"writer": "writers", "reader": "readers"} {
		var created mgmtapi.TokenCreated
		out := admin.must(t, georegBin, "token", "create", name, "--scope-map", sm, "--registry", base, "--output", "json")
		if err := json.Unmarshal([]byte(out), &created); err != nil || created.Password == "" {
			t.Fatalf("token create: %v %s", err, out)
		}
		tokens[name] = created.Password
	}

	writer := newClientEnv(t, ca)
	writer.must(t, "regctl", "registry", "login", reg, "-u", "writer", "-p", tokens["writer"])
	writer.must(t, "regctl", "image", "copy", reg+"/app/web:v1", reg+"/app/copy:v1")
	if got := strings.TrimSpace(writer.must(t, "regctl", "image", "digest", reg+"/app/copy:v1")); got != digest {
		t.Fatalf("regctl copy digest %s, want %s", got, digest)
	}
	// (regctl retries a refused push for a quarter of a minute; crane
	// reports it at once.)
	writer.must(t, "crane", "auth", "login", reg, "-u", "writer", "-p", tokens["writer"])
	if out, err := writer.run(t, "crane", "copy", reg+"/app/web:v1", reg+"/other/copy:v1"); err == nil || !strings.Contains(out, "403") {
		t.Fatalf("the writer token pushed outside app/*: %v\n%s", err, out)
	}

	reader := newClientEnv(t, ca)
	reader.must(t, "skopeo", "login", "-u", "reader", "-p", tokens["reader"], reg)
	if out := reader.must(t, "skopeo", "inspect", "--raw", "docker://"+reg+"/app/copy:v1"); !strings.Contains(out, "schemaVersion") {
		t.Fatalf("skopeo inspect: %s", out)
	}
	dir := t.TempDir()
	reader.must(t, "skopeo", "copy", "docker://"+reg+"/app/web:v1", "oci:"+dir+":v1")
	if out, err := reader.run(t, "skopeo", "copy", "oci:"+dir+":v1", "docker://"+reg+"/app/pushed:v1"); err == nil || !refused(out) {
		t.Fatalf("the reader token's push was not refused for its rights: %v\n%s", err, out)
	}

	// containerd logs in with the token's password through the token
	// endpoint's OAuth2 POST (password grant), over TLS. It takes a
	// loopback registry for plain HTTP unless its hosts directory says
	// otherwise.
	sock := startContainerd(t)
	hosts := t.TempDir()
	if err := os.MkdirAll(filepath.Join(hosts, reg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hosts, reg, "hosts.toml"), []byte(fmt.Sprintf("server = %q\n[host.%q]\n  ca = %q\n", base, base, ca)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runErr(t, "ctr", "--address", sock, "images", "pull", "--hosts-dir", hosts, "--user", "reader:"+tokens["reader"], reg+"/app/web:v1"); err != nil {
		t.Fatalf("ctr pull with the reader token: %v\n%s", err, out)
	}
	if out, err := runErr(t, "ctr", "--address", sock, "images", "pull", "--hosts-dir", hosts, "--user", "reader:wrong-password", reg+"/app/copy:v1"); err == nil || !refused(out) {
		t.Fatalf("ctr pull with a wrong password: %v\n%s", err, out)
	}
	if out := admin.must(t, georegBin, "audit", "list", "--since", "1h", "--registry", base, "--output", "json"); !strings.Contains(out, "password grant") {
		t.Fatalf("no login by OAuth2 password grant in the audit log: containerd did not POST to the token endpoint\n%s", out)
	}

	// A disabled token stops working at once.
	admin.must(t, georegBin, "token", "update", "reader", "--status", "disabled", "--registry", base)
	if out, err := reader.run(t, "skopeo", "inspect", "--raw", "docker://"+reg+"/app/copy:v1"); err == nil || !refused(out) {
		t.Fatalf("a disabled token was not refused for its credentials: %v\n%s", err, out)
	}
	// The management API needs an admin: a token's login is refused.
	tokenUser := newClientEnv(t, ca)
	tokenUser.must(t, georegBin, "login", base, "-u", "writer", "-p", tokens["writer"])
	if out, err := tokenUser.run(t, georegBin, "token", "list", "--registry", base); err == nil || !strings.Contains(out, "DENIED") {
		t.Fatalf("token list as a token: %v\n%s", err, out)
	}
	logs, _ := os.ReadFile(s.logPath())
	for _, secret := range []string{password, tokens["writer"], tokens["reader"]} {
		if strings.Contains(string(logs), secret) {
			t.Fatal("the server log holds a password")
		}
	}
}

// refused reports whether a client's output says the registry refused its
// credentials or rights (401 or 403), not that something else broke.
func refused(out string) bool {
	out = strings.ToLower(out)
	for _, sign := range []string{"401", "403", "unauthorized", "denied", "authentication required"} {
		if strings.Contains(out, sign) {
			return true
		}
	}
	return false
}
