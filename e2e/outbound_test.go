package e2e

import (
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestImportsWebhooksAndReplicasReachOnlyWhatTheOutboundPolicyAllows: a
// region started with no outbound rules refuses to import from a
// registry on 127.0.0.1, to ping a webhook there and to register a replica
// there, each saying which rule would allow it; it never reaches the
// cloud metadata address, whatever the rules; once an admin adds
// 127.0.0.1 (a replicated rule), the import and the ping go through.
func TestImportsWebhooksAndReplicasReachOnlyWhatTheOutboundPolicyAllows(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "eastus")
	target := &server{t: t, addr: freeAddr(t), data: data,
		args: []string{"--listen", "", "--data", data, "--region", "eastus", "--log-level", "warn"}}
	target.args[1] = target.addr
	target.start()
	t.Cleanup(target.kill)
	reg := "http://" + target.addr
	source := startServer(t, t.TempDir())
	pushImage(t, source.addr, "src/app", "v1", "outbound")
	var hits atomic.Int64
	hook := http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) })}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hookAddr := hl.Addr().String()
	served := make(chan struct{})
	go func() { defer close(served); _ = hook.Serve(hl) }()
	t.Cleanup(func() { _ = hook.Close(); <-served })

	out, err := runErr(t, georegBin, "import", "--registry", reg, "--source", "http://"+source.addr+"/src/app:v1", "--image", "app:v1")
	if err == nil || !strings.Contains(out, "outbound-rule add --ip-address 127.0.0.1") {
		t.Fatalf("an import from 127.0.0.1 without a rule: %v\n%s", err, out)
	}
	out, err = runErr(t, georegBin, "import", "--registry", reg, "--source", "http://169.254.169.254/latest/meta-data:v1", "--image", "meta:v1")
	if err == nil || !strings.Contains(out, "never reached") {
		t.Fatalf("an import from the metadata address: %v\n%s", err, out)
	}
	georeg(t, "webhook", "create", "--registry", reg, "--name", "inside", "--uri", "http://"+hookAddr+"/hook", "--actions", "push")
	out, _ = runErr(t, georegBin, "webhook", "ping", "inside", "--registry", reg)
	if !strings.Contains(out, "outbound policy") || hits.Load() != 0 {
		t.Fatalf("a ping to 127.0.0.1 without a rule (%d requests arrived):\n%s", hits.Load(), out)
	}
	georeg(t, "webhook", "create", "--registry", reg, "--name", "metadata", "--uri", "http://169.254.169.254/latest/meta-data", "--actions", "push")
	if out, _ = runErr(t, georegBin, "webhook", "ping", "metadata", "--registry", reg); !strings.Contains(out, "never reached") {
		t.Fatalf("a ping to the metadata address:\n%s", out)
	}
	out, err = runErr(t, georegBin, "replication", "create", "--registry", reg, "--name", "inside", "--endpoint", "http://"+source.addr)
	if err == nil || !strings.Contains(out, "DENIED") || !strings.Contains(out, "outbound-rule add") {
		t.Fatalf("a replica on 127.0.0.1 without a rule: %v\n%s", err, out)
	}
	out, err = runErr(t, georegBin, "replication", "create", "--registry", reg, "--name", "metadata", "--endpoint", "http://169.254.169.254")
	if err == nil || !strings.Contains(out, "never reached") {
		t.Fatalf("a replica at the metadata address: %v\n%s", err, out)
	}

	georeg(t, "outbound-rule", "add", "--registry", reg, "--ip-address", "127.0.0.1")
	if got := georeg(t, "outbound-rule", "list", "--registry", reg, "-o", "tsv"); strings.TrimSpace(got) != "127.0.0.1/32" {
		t.Fatalf("outbound-rule list: %q", got)
	}
	waitFor(t, 10*time.Second, func() error {
		_, err := runErr(t, georegBin, "import", "--registry", reg, "--source", "http://"+source.addr+"/src/app:v1", "--image", "app:v1")
		return err
	})
	georeg(t, "webhook", "ping", "inside", "--registry", reg)
	if hits.Load() == 0 {
		t.Fatal("the ping did not arrive once 127.0.0.1 was allowed")
	}
	out, err = runErr(t, georegBin, "import", "--registry", reg, "--source", "http://169.254.169.254/latest/meta-data:v1", "--image", "meta:v1")
	if err == nil || !strings.Contains(out, "never reached") {
		t.Fatalf("an import from the metadata address with a loopback rule: %v\n%s", err, out)
	}
}
