package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsPointDown fences the layering of docs/design.md: handlers ->
// region -> content, meta -> oci, ocierr, hlc. A lower package importing a
// higher one fails here. Direct imports are checked: ociapi reaching meta
// through region is the rule, importing it itself is not.
func TestImportsPointDown(t *testing.T) {
	const mod = "github.com/georeg/georeg/internal/"
	forbidden := map[string][]string{
		"oci":        {"ocierr", "ociapi", "region", "content", "meta", "node"},
		"ocierr":     {"oci", "ociapi", "region", "content", "meta", "node"},
		"hlc":        {"oci", "ocierr", "ociapi", "region", "content", "meta", "node"},
		"content":    {"meta", "region", "ociapi", "node"},
		"content/fs": {"meta", "region", "ociapi", "node"},
		"meta":       {"content", "region", "ociapi", "node"},
		"region":     {"ociapi", "node", "config"},
		"ociapi":     {"node", "config", "meta"},
		"auth":       {"region", "ociapi", "mgmtapi", "node", "content"},
		"webhook":    {"region", "ociapi", "mgmtapi", "node", "content"},
		"feed":       {"region", "ociapi", "node", "replicate"},
		"route":      {"region", "meta", "content", "ociapi", "node", "replicate"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, "../internal/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[d] = true
		}
		for _, b := range bad {
			if deps[mod+b] {
				t.Errorf("internal/%s imports internal/%s: imports must point down", pkg, b)
			}
		}
	}
}
