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

// TestAFailedCaseThroughTheDoorNamesTheRegionsThatAnswered: the regions
// the front door names on the responses a failed case printed are in its
// reason, in order, so a wrong answer through the door says who gave it.
func TestAFailedCaseThroughTheDoorNamesTheRegionsThatAnswered(t *testing.T) {
	report := `<testsuites><testsuite><testcase name="blobs/emptyJSON/blob-delete" status="failure"><system-out>unexpected status 200
~~~ RESPONSE ~~~
Status: 202
Headers:
            X-Georeg-Region: [eastus]
~~~ RESPONSE ~~~
Status: 200
Headers:
             Content-Length: [2]
            X-Georeg-Region: [westeurope]
</system-out></testcase><testcase name="blobs/emptyJSON/blob-head" status="passed"><system-out>
            X-Georeg-Region: [eastus]
</system-out></testcase></testsuite></testsuites>`
	got := failedCases([]byte(report))
	if len(got) != 1 || !strings.HasSuffix(got[0], "(answered by: eastus, westeurope)") {
		t.Fatalf("failed cases: %q", got)
	}
}
