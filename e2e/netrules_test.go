package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestNetworkRulesNeverLockTheOperatorOut: with auth and TLS on, the
// operator on the machine follows docs/security.md's order (allow, then
// deny) through the CLI; the order that would deny them is refused,
// saying why; forced rules that deny their pulls still leave them the
// management API; and `georeg serve --reset-network-rules` opens
// everything again.
func TestNetworkRulesNeverLockTheOperatorOut(t *testing.T) {
	s, ca, password := authServer(t)
	base := "https://" + s.addr
	admin := newClientEnv(t, ca)
	admin.must(t, georegBin, "login", base, "-u", "admin", "-p", password)
	georeg := func(args ...string) (string, error) {
		return admin.run(t, georegBin, append(args, "--registry", base)...)
	}

	// Deny first: refused, with the way out in the message, nothing changed.
	out, err := georeg("update", "--default-action", "Deny")
	if err == nil || !strings.Contains(out, "would deny your own address 127.0.0.1") || !strings.Contains(out, "network-rule add --ip-address 127.0.0.1") {
		t.Fatalf("a default action that denies the operator: %v\n%s", err, out)
	}
	if out := admin.must(t, georegBin, "network-rule", "list", "--registry", base, "--output", "json"); !strings.Contains(out, `"Allow"`) {
		t.Fatalf("the refused change changed the rules: %s", out)
	}

	// The documented order: allow, then deny.
	for _, args := range [][]string{
		{"network-rule", "add", "--ip-address", "10.1.0.0/16"},
		{"network-rule", "add", "--ip-address", "127.0.0.1"},
		{"update", "--default-action", "Deny"},
	} {
		if out, err := georeg(args...); err != nil {
			t.Fatalf("georeg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	v2 := func() int {
		code, err := httpsStatus(ca, base+"/v2/")
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	if code := v2(); code != 401 {
		t.Fatalf("/v2/ from an allowed 127.0.0.1: %d, want 401 (sign in)", code)
	}

	// Forced: the operator's own address is removed. Pulls from it are
	// denied; managing from the machine is not.
	if out, err := georeg("network-rule", "remove", "--ip-address", "127.0.0.1"); err == nil || !strings.Contains(out, "--force") {
		t.Fatalf("removing the operator's own address without --force: %v\n%s", err, out)
	}
	if out, err := georeg("network-rule", "remove", "--ip-address", "127.0.0.1", "--force"); err != nil {
		t.Fatalf("forced: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for code := v2(); code != 403; code = v2() {
		if time.Now().After(deadline) {
			t.Fatalf("/v2/ from a denied 127.0.0.1: %d, want 403", code)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait (rules are re-read every second)
	}
	if out := admin.must(t, georegBin, "network-rule", "list", "--registry", base, "--output", "json"); !strings.Contains(out, "10.1.0.0/16") {
		t.Fatalf("management from loopback under rules that deny it: %s", out)
	}

	// Break-glass: a restart with --reset-network-rules opens them.
	s.kill()
	s.args = append(s.args, "--reset-network-rules")
	s.start()
	if code := v2(); code != 401 {
		t.Fatalf("/v2/ after --reset-network-rules: %d, want 401", code)
	}
	out = admin.must(t, georegBin, "network-rule", "list", "--registry", base, "--output", "json")
	if !strings.Contains(out, `"Allow"`) || strings.Contains(out, "10.1.0.0/16") {
		t.Fatalf("rules after the reset: %s", out)
	}
}
