package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/tlsconf"
)

// readmeBlock returns the shell lines of the first ```sh block after the
// heading in README.md, comments stripped.
func readmeBlock(t *testing.T, heading string) []string {
	t.Helper()
	f, err := os.Open("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	state := 0 // 0: looking for the heading, 1: for the block, 2: in it
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && line == heading:
			state = 1
		case state == 1 && line == "```sh":
			state = 2
		case state == 2 && line == "```":
			return lines
		case state == 2:
			if cmd, _, _ := strings.Cut(line, "  #"); strings.TrimSpace(cmd) != "" {
				lines = append(lines, strings.TrimSpace(cmd))
			}
		}
	}
	t.Fatalf("README.md has no sh block under %q", heading)
	return nil
}

// runREADMEBlock runs README.md's sh block under heading in a fresh
// directory, as a user would: its first line, `go run ./cmd/georeg up ...`,
// as the binary under test in the background, until ready says it
// answers; then every other line through bash with georeg on the PATH, a
// fresh HOME and no CA configured. It returns the directory and the
// environment the lines ran with.
func runREADMEBlock(t *testing.T, heading string, ready func(dir string) error) (string, []string) {
	t.Helper()
	lines := readmeBlock(t, heading)
	if !strings.HasPrefix(lines[0], "go run ./cmd/georeg up") {
		t.Fatalf("the block under %s no longer starts with georeg up: %q", heading, lines[0])
	}
	dir := t.TempDir()
	home := t.TempDir()
	env := append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker"),
		"GEOREG_CONFIG_DIR="+filepath.Join(home, "georeg"), "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"PATH="+filepath.Dir(georegBin)+":"+os.Getenv("PATH"))
	upArgs := strings.Fields(strings.TrimPrefix(lines[0], "go run ./cmd/georeg "))
	log, err := os.Create(filepath.Join(dir, "up.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	up := exec.Command(georegBin, append(upArgs, "--log-level", "warn")...)
	up.Dir, up.Env, up.Stdout, up.Stderr = dir, env, log, log
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Process.Kill(); _ = up.Wait() })

	deadline := time.Now().Add(60 * time.Second)
	for {
		err := ready(dir)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "up.log"))
			t.Fatalf("%s not answering after 60 s: %v\n%s", lines[0], err, b)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}

	for _, line := range lines[1:] {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", line)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("README line %q: %v\n%s", line, err, out)
		}
		t.Logf("$ %s\n%s", line, out)
	}
	return dir, env
}

// TestTheREADMESecurityBlockRunsAsWritten runs README.md's Security block:
// `go run ./cmd/georeg up --auth --tls`, then every other line — the login
// finds georeg up's CA itself, and later commands ask the registry it
// logged in to. One login covers the region endpoints too: a pinned
// request to westeurope's own port is authorized.
func TestTheREADMESecurityBlockRunsAsWritten(t *testing.T) {
	// Ready: the door answers over HTTPS with georeg up's CA.
	dir, env := runREADMEBlock(t, "### Security", func(dir string) error {
		ca := filepath.Join(dir, "georeg-data", "tls", "ca.pem")
		code, err := httpsStatus(ca, "https://"+upDoor+"/v2/")
		if err == nil && code != 401 {
			err = fmt.Errorf("the door answers %d, want 401", code)
		}
		return err
	})

	// The login covers each region's own endpoint: crane, reading the
	// docker config the login wrote, lists westeurope's catalog there.
	crane := exec.Command("crane", "catalog", upRegions["westeurope"])
	crane.Env = append(env, "SSL_CERT_FILE="+filepath.Join(dir, "georeg-data", "tls", "ca.pem"))
	if out, err := crane.CombinedOutput(); err != nil {
		t.Fatalf("crane catalog on westeurope's own port after one login: %v\n%s", err, out)
	}
}

// TestTheREADMEFaultsBlockRunsAsWritten runs README.md's block on faults
// put on purpose: a partition of westeurope through `georeg link`, a push
// that reaches southeastasia but not westeurope, the heal, and the image
// arriving in westeurope. Each line's exit status is the check (georeg
// wait fails when its timeout passes); after the block, westeurope holds
// the image in its own storage.
func TestTheREADMEFaultsBlockRunsAsWritten(t *testing.T) {
	runREADMEBlock(t, "### Faults on purpose", func(string) error {
		for _, addr := range upRegions {
			if err := regionReady(addr); err != nil {
				return err
			}
		}
		resp, err := http.Get("http://" + upDoor + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	status, err := http.Get("http://" + upRegions["westeurope"] + "/_georeg/v1/images/status?repository=demo/cut&reference=v1&local=true")
	if err != nil {
		t.Fatal(err)
	}
	defer status.Body.Close()
	b, _ := io.ReadAll(status.Body)
	if status.StatusCode != 200 || !strings.Contains(string(b), "present") {
		t.Fatalf("westeurope after the heal: %d %s, want the image present", status.StatusCode, b)
	}
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
