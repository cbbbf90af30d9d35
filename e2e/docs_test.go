package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/tlsconf"
)

// The shell blocks of README.md and docs/*.md run as written: every
// ```sh block a user is told to run is executed by TestEveryDocsShellBlockRuns,
// each in a fresh directory holding a copy of README.md (as a clone
// does), against a `georeg up` of its own, with georeg on the PATH, a
// fresh HOME and no CA configured. A block that starts with `go run
// ./cmd/georeg up ...` starts its own; other blocks get a plain one.
// A block opts out only with a reason, in the line right before it:
//
//	<!-- not run: why -->
//
// Hosts out of reach from a test (Docker Hub, a registry being moved from,
// a CI server's webhook) are replaced by stand-ins on loopback, listed in
// docHosts; a block naming any other non-loopback URL fails.

// docBlock is one ```sh block.
type docBlock struct {
	key   string // file#heading, with [n] for the n-th block under a heading
	lines []string
	skip  string // the reason of a <!-- not run: ... --> before it
}

var notRun = regexp.MustCompile(`^<!-- not run: (.+) -->$`)

// docBlocks returns the sh blocks of README.md and docs/*.md, in order:
// comments stripped (from "  #" on), continuation lines joined.
func docBlocks(t *testing.T) []docBlock {
	t.Helper()
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	var out []docBlock
	for _, path := range append([]string{"../README.md"}, files...) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(path, "../")
		heading, prev := "", ""
		count := map[string]int{}
		var cur *docBlock
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case cur == nil && strings.HasPrefix(line, "#"):
				heading = strings.TrimSpace(strings.TrimLeft(line, "#"))
			case cur == nil && line == "```sh":
				count[heading]++
				cur = &docBlock{key: fmt.Sprintf("%s#%s[%d]", name, heading, count[heading])}
				if m := notRun.FindStringSubmatch(prev); m != nil {
					cur.skip = m[1]
				}
			case cur != nil && line == "```":
				out = append(out, *cur)
				cur = nil
			case cur != nil:
				cmd, _, _ := strings.Cut(line, "  #")
				cmd = strings.TrimSpace(cmd)
				if cmd == "" || strings.HasPrefix(cmd, "#") {
					break
				}
				if n := len(cur.lines); n > 0 && strings.HasSuffix(cur.lines[n-1], `\`) {
					cur.lines[n-1] = strings.TrimSpace(strings.TrimSuffix(cur.lines[n-1], `\`)) + " " + cmd
					break
				}
				cur.lines = append(cur.lines, cmd)
			}
			if strings.TrimSpace(line) != "" {
				prev = line
			}
		}
		f.Close()
		if cur != nil {
			t.Fatalf("%s: a ```sh block is not closed", cur.key)
		}
	}
	return out
}

// docHosts are the stand-ins for hosts the docs name that a test cannot
// reach.
var docHosts = []struct{ real, standIn string }{
	{"docker.io/library/alpine:3.20", docUpstream + "/library/alpine:3.20"}, // Docker Hub: a crane registry
	{"'docker.io/library/*'", "'http://" + docUpstream + "/library/*'"},     // Docker Hub as a cache rule's source
	{"https://old.example.com", "http://" + docOldRegistry},                 // a registry being moved from: a georeg region
	{"https://ci.example.com/hook", "http://" + docHookReceiver + "/hook"},  // webhook receivers: an HTTP server
	{"https://eu-cluster.example.com/hook", "http://" + docHookReceiver + "/hook"},
}

const (
	docUpstream     = "127.0.0.1:5030"
	docOldRegistry  = "127.0.0.1:5020"
	docHookReceiver = "127.0.0.1:9000"
)

var anyURL = regexp.MustCompile(`https?://([^/\s'"]+)`)

// substitute puts the stand-ins in line and fails on any other host that
// is not on loopback.
func substitute(t *testing.T, key, line string) string {
	t.Helper()
	for _, h := range docHosts {
		line = strings.ReplaceAll(line, h.real, h.standIn)
	}
	for _, m := range anyURL.FindAllStringSubmatch(line, -1) {
		host, _, err := net.SplitHostPort(m[1])
		if err != nil {
			host = m[1]
		}
		if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			t.Fatalf("%s names %s, out of a test's reach, with no stand-in in docHosts: %q", key, m[0], line)
		}
	}
	return line
}

// docSetup prepares what a block takes as given, before it runs.
var docSetup = map[string]func(t *testing.T, dir string, env []string){
	// The repositories block works on the quick start's demo/app:v1.
	"README.md#Repositories, locks, retention, garbage collection[1]": func(t *testing.T, dir string, env []string) {
		docScript(t, "README quick start", dir, env, []string{"tar -cf layer.tar README.md",
			"crane append --insecure -f layer.tar -t 127.0.0.1:5000/demo/app:v1"})
	},
	// Import from "Docker Hub" and move from an "old" registry: a crane
	// registry holding library/alpine:3.20 and a georeg region holding an
	// image and a retention policy.
	"README.md#Import and relocation[1]": func(t *testing.T, dir string, env []string) {
		docBackground(t, dir, env, "crane", "registry", "serve", "--address", docUpstream)
		waitFor(t, 10*time.Second, func() error { return answers("http://" + docUpstream + "/v2/") })
		old := filepath.Join(dir, "old")
		docBackground(t, dir, env, georegBin, "serve", "--region", "legacy", "--listen", docOldRegistry, "--data", old, "--log-level", "warn")
		waitFor(t, 30*time.Second, func() error { return regionReady(docOldRegistry) })
		docScript(t, "stand-ins", dir, env, []string{
			"tar -cf layer.tar README.md",
			"crane append --insecure -f layer.tar -t " + docUpstream + "/library/alpine:3.20",
			"crane append --insecure -f layer.tar -t " + docOldRegistry + "/legacy/app:v1",
			"georeg config retention update --registry http://" + docOldRegistry + " --status enabled --days 30 --type UntaggedManifests",
		})
	},
}

// The cache rule's "Docker Hub": a crane registry holding
// library/alpine:3.20.
func init() {
	docSetup["docs/cache.md#Artifact cache[1]"] = func(t *testing.T, dir string, env []string) {
		docBackground(t, dir, env, "crane", "registry", "serve", "--address", docUpstream)
		waitFor(t, 10*time.Second, func() error { return answers("http://" + docUpstream + "/v2/") })
		docScript(t, "stand-ins", dir, env, []string{
			"tar -cf layer.tar README.md",
			"crane append --insecure -f layer.tar -t " + docUpstream + "/library/alpine:3.20",
		})
	}
}

// docCheck checks, after a block ran, what its lines' exit statuses do not
// show.
var docCheck = map[string]func(t *testing.T, dir string, env []string){
	// One login covers each region's own endpoint: crane, reading the
	// docker config the login wrote, lists westeurope's catalog there.
	"README.md#Security[1]": func(t *testing.T, dir string, env []string) {
		crane := exec.Command("crane", "catalog", upRegions["westeurope"])
		crane.Env = append(env, "SSL_CERT_FILE="+filepath.Join(dir, "georeg-data", "tls", "ca.pem"))
		if out, err := crane.CombinedOutput(); err != nil {
			t.Fatalf("crane catalog on westeurope's own port after one login: %v\n%s", err, out)
		}
	},
	// After the heal, westeurope holds the image in its own storage.
	"README.md#Faults on purpose[1]": func(t *testing.T, _ string, _ []string) {
		resp, err := http.Get("http://" + upRegions["westeurope"] + "/_georeg/v1/images/status?repository=demo/cut&reference=v1&local=true")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), "present") {
			t.Fatalf("westeurope after the heal: %d %s, want the image present", resp.StatusCode, b)
		}
	},
	// The moved registry holds the old one's image and retention policy.
	"README.md#Import and relocation[1]": func(t *testing.T, dir string, env []string) {
		out := docScript(t, "after the move", dir, env, []string{
			"crane manifest --insecure 127.0.0.1:5000/legacy/app:v1",
			"crane manifest --insecure 127.0.0.1:5002/base/alpine:3.20",
			"georeg config retention show -o json",
		})
		if !strings.Contains(out, `"days": 30`) {
			t.Fatalf("the old registry's retention policy did not move:\n%s", out)
		}
	},
}

func TestEveryDocsShellBlockRuns(t *testing.T) {
	blocks := docBlocks(t)
	if len(blocks) < 10 {
		t.Fatalf("%d shell blocks found in README.md and docs/*.md; the parser lost some", len(blocks))
	}
	keys := map[string]bool{}
	for _, b := range blocks {
		keys[b.key] = true
	}
	for _, m := range []map[string]func(*testing.T, string, []string){docSetup, docCheck} {
		for k := range m {
			if !keys[k] {
				t.Errorf("a setup or check names block %q, which the docs no longer have", k)
			}
		}
	}
	for _, b := range blocks {
		t.Run(b.key, func(t *testing.T) {
			if b.skip != "" {
				t.Logf("not run: %s", b.skip)
				return
			}
			runDocBlock(t, b)
		})
	}
}

// runDocBlock runs b in a fresh directory: its server lines in the
// background (each waited for), the lines between them as one bash script
// with -euo pipefail, so an export holds for the lines after it.
func runDocBlock(t *testing.T, b docBlock) {
	dir := t.TempDir()
	home := t.TempDir()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), readme, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker"),
		"GEOREG_CONFIG_DIR="+filepath.Join(home, "georeg"), "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"PATH="+filepath.Dir(georegBin)+":"+os.Getenv("PATH"))
	receiveHooks(t)
	if len(b.lines) == 0 || !strings.HasPrefix(b.lines[0], "go run ./cmd/georeg up") {
		startDocServer(t, dir, env, "georeg up")
	}
	if setup := docSetup[b.key]; setup != nil {
		setup(t, dir, env)
	}
	var script []string
	for _, line := range b.lines {
		line = substitute(t, b.key, line)
		if strings.HasPrefix(line, "go run ./cmd/georeg up") || strings.HasPrefix(line, "georeg serve ") {
			docScript(t, b.key, dir, env, script)
			script = nil
			startDocServer(t, dir, env, strings.TrimPrefix(line, "go run ./cmd/"))
			continue
		}
		script = append(script, line)
	}
	docScript(t, b.key, dir, env, script)
	if check := docCheck[b.key]; check != nil {
		check(t, dir, env)
	}
}

// docScript runs lines as one bash script in dir and returns its output.
func docScript(t *testing.T, what, dir string, env []string, lines []string) string {
	t.Helper()
	if len(lines) == 0 {
		return ""
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euxo", "pipefail", "-c", strings.Join(lines, "\n"))
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	t.Logf("%s\n%s", what, out)
	return string(out)
}

// startDocServer starts `georeg up ...` or `georeg serve ...` (the binary
// under test) in the background and waits until it serves: for up, the
// front door and every region; for serve, its --listen address Ready.
func startDocServer(t *testing.T, dir string, env []string, line string) {
	t.Helper()
	args := strings.Fields(strings.TrimPrefix(line, "georeg "))
	args = append(args, "--log-level", "warn")
	logPath := docBackground(t, dir, env, georegBin, args...)
	if args[0] == "up" {
		tls := slices.Contains(args, "--tls")
		waitFor(t, 60*time.Second, func() error {
			for _, addr := range append([]string{upDoor}, upRegions["eastus"], upRegions["westeurope"], upRegions["southeastasia"]) {
				if tls {
					if _, err := httpsStatus(filepath.Join(dir, "georeg-data", "tls", "ca.pem"), "https://"+addr+"/v2/"); err != nil {
						return err
					}
					continue
				}
				if err := answers("http://" + addr + "/v2/"); err != nil {
					return err
				}
				if addr != upDoor {
					if err := regionReady(addr); err != nil {
						return fmt.Errorf("%s: %w", addr, err)
					}
				}
			}
			return upReportedReady(logPath) // what the README has a user wait for
		})
		return
	}
	i := slices.Index(args, "--listen")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("%q: a georeg serve line in the docs names its --listen address", line)
	}
	waitFor(t, 60*time.Second, func() error { return regionReady(args[i+1]) })
}

// docBackground starts name in dir, logging to a file there, and kills it
// when the test ends.
func docBackground(t *testing.T, dir string, env []string, name string, args ...string) (logPath string) {
	t.Helper()
	log, err := os.CreateTemp(dir, "server-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), lastLines(string(b), 30))
		}
	})
	return log.Name()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// answers reports nil when u answers HTTP at all.
func answers(u string) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// receiveHooks answers webhook deliveries and pings on docHookReceiver
// with 200 while the test runs.
func receiveHooks(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", docHookReceiver)
	if err != nil {
		t.Fatalf("the webhook receiver's address %s: %v", docHookReceiver, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Log(err)
		}
	})
}

// httpsStatus GETs u trusting the CA file and returns the status.
func httpsStatus(ca, u string) (int, error) {
	tc, err := tlsconf.Client(ca)
	if err != nil {
		return 0, err
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
