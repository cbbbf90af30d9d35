// Package kmstest runs a real Kubernetes KMS v2 plugin for tests:
// cmd/georeg-kms-pkcs11 over a SoftHSM2 token made in a temporary
// directory (Debian's softhsm2; make tools installs it). A missing
// SoftHSM2 fails the test.
package kmstest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Module is SoftHSM2's PKCS#11 library as Debian installs it.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// pluginBinary builds cmd/georeg-kms-pkcs11 once per test process.
func pluginBinary(t testing.TB) string {
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		dir, err := os.MkdirTemp("", "georeg-kms-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "georeg-kms-pkcs11")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/georeg-kms-pkcs11")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/georeg-kms-pkcs11: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// Plugin is a running plugin over its own token.
type Plugin struct {
	t      testing.TB
	dir    string
	Socket string
	Label  string // the current key's label (its key id)
	cmd    *exec.Cmd
	done   chan struct{}
	log    *bytes.Buffer
	mu     sync.Mutex
}

// Start makes a SoftHSM2 token in a temporary directory and starts the
// plugin on it with the current key label (made in the token); t's
// cleanup stops it.
func Start(t testing.TB, label string) *Plugin {
	t.Helper()
	if _, err := os.Stat(Module); err != nil {
		t.Fatalf("SoftHSM2 is not installed (%v): make tools installs Debian's softhsm2", err)
	}
	pluginBinary(t)                             // built before the token is made
	dir, err := os.MkdirTemp("", "georeg-hsm-") // short: a Unix socket's path is at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", filepath.Join(dir, "tokens"))
	if err := os.WriteFile(filepath.Join(dir, "softhsm2.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	init := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "georeg", "--pin", "1234", "--so-pin", "5678")
	init.Env = append(os.Environ(), "SOFTHSM2_CONF="+filepath.Join(dir, "softhsm2.conf"))
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	p := &Plugin{t: t, dir: dir, Socket: filepath.Join(dir, "kms.sock")}
	p.Restart(label)
	t.Cleanup(p.Stop)
	return p
}

// Restart (re)starts the plugin with label as the current key, made in
// the token when missing: a rotation when label is new.
func (p *Plugin) Restart(label string) {
	p.t.Helper()
	p.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Label = label
	p.log = &bytes.Buffer{}
	p.cmd = exec.Command(pluginBinary(p.t), "--socket", p.Socket, "--module", Module, "--token", "georeg", "--key-label", label, "--create-key")
	p.cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+filepath.Join(p.dir, "softhsm2.conf"), "KMS_PKCS11_PIN=1234")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", p.Socket); err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			p.t.Fatalf("the KMS plugin exited: %s", p.log)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the KMS plugin did not listen on %s within 20 s: %s", p.Socket, p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the plugin (kill -9: the key service is gone at once) and
// waits for it.
func (p *Plugin) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}
