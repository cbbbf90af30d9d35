package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestEveryPrintingCommandTakesEveryOutputFormatAndAQuery: each listing
// command prints table, tsv, json, jsonc, yaml and none as az does, and
// --query (JMESPath) reshapes its answer.
func TestEveryPrintingCommandTakesEveryOutputFormatAndAQuery(t *testing.T) {
	s := startServer(t, t.TempDir()+"/eastus")
	pushImage(t, s.addr, "out/app", "v1", "output-formats")
	reg := []string{"-r", s.addr} // the short flag, host:port alone
	georeg := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, georegBin, append(args, reg...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("georeg %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return string(out)
	}
	for _, command := range [][]string{
		{"replication", "list"},
		{"repository", "list"},
		{"repository", "show-tags", "--name", "out/app"},
		{"webhook", "list"},
		{"scope-map", "list"},
		{"token", "list"},
		{"network-rule", "list"},
		{"config", "retention", "show"},
		{"image", "status", "out/app:v1"},
	} {
		name := strings.Join(command, " ")
		table := georeg(append(command, "-o", "table")...)
		if strings.TrimSpace(table) == "" {
			t.Errorf("%s -o table printed nothing", name)
		}
		// tsv: fields one tab apart, never padded (cut -f and awk -F'\t').
		for _, line := range strings.Split(strings.TrimRight(georeg(append(command, "-o", "tsv")...), "\n"), "\n") {
			if strings.Contains(line, "  ") {
				t.Errorf("%s -o tsv: a line padded with spaces, not tab-separated: %q", name, line)
			}
		}
		var v any
		if out := georeg(append(command, "-o", "json")...); json.Unmarshal([]byte(out), &v) != nil {
			t.Errorf("%s -o json is not JSON:\n%s", name, out)
		}
		if out := georeg(append(command, "-o", "jsonc")...); out != "[]\n" && !strings.Contains(out, "\x1b[") {
			t.Errorf("%s -o jsonc has no color:\n%s", name, out)
		}
		var y any
		if out := georeg(append(command, "-o", "yaml")...); yaml.Unmarshal([]byte(out), &y) != nil || out == "" {
			t.Errorf("%s -o yaml is not YAML:\n%s", name, out)
		}
		if out := georeg(append(command, "-o", "none")...); out != "" {
			t.Errorf("%s -o none printed %q", name, out)
		}
		// A query reshapes the same answer: its type, then as a table.
		if out := strings.TrimSpace(georeg(append(command, "--query", "type(@)", "-o", "tsv")...)); out != "array" && out != "object" {
			t.Errorf("%s --query type(@): %q", name, out)
		}
	}
	// -n/--name names the object, as the argument does.
	if byFlag, byArg := georeg("replication", "show", "-n", "eastus", "--query", "name", "-o", "tsv"), georeg("replication", "show", "eastus", "--query", "name", "-o", "tsv"); byFlag != "eastus\n" || byArg != byFlag {
		t.Errorf("replication show -n eastus: %q; by argument: %q", byFlag, byArg)
	}
	// A query that picks: the names of the Ready regions.
	if out := strings.TrimSpace(georeg("replication", "list", "--query", "[?state=='Ready'].name", "-o", "tsv")); out != "eastus" {
		t.Errorf("replication list --query \"[?state=='Ready'].name\": %q", out)
	}
	if out := strings.TrimSpace(georeg("repository", "show-tags", "--name", "out/app", "--query", "length(@)", "-o", "tsv")); out != strconv.Itoa(1) {
		t.Errorf("show-tags --query length(@): %q", out)
	}
}
