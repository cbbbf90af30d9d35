package e2e

import (
	"os"
	"strings"
	"testing"
)

// TestFailedCasesNamesTheConformanceSuitesFailures: a report of the
// conformance suite (testdata, from a run against nothing) yields each
// failed case with its reason.
func TestFailedCasesNamesTheConformanceSuitesFailures(t *testing.T) {
	data, err := os.ReadFile("testdata/conformance-junit.xml")
	if err != nil {
		t.Fatal(err)
	}
	got := failedCases(data)
	if len(got) == 0 || !strings.HasPrefix(got[0], "OCI Conformance Test/ping: registry ping failed") {
		t.Fatalf("failed cases: %d, first %q", len(got), got)
	}
}
