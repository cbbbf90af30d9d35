package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The OCI distribution-spec conformance suites, built by make test into
// .tools/bin from the module proxy at pinned versions (Makefile:
// CONFORMANCE_MAIN, CONFORMANCE_GINKGO); their code is never copied into
// the project:
//
//   - oci-conformance: the main branch's suite (a program; 858 tests with
//     sha512 content, writes results/junit.xml).
//   - oci-conformance-ginkgo.test: the ginkgo suite of the v1.1 series
//     (commit f2182352d4cc, 2023-11; the v1.1.1 tag's commit is not served
//     by the module proxy here), run as a test binary.
const (
	mainSuite   = "oci-conformance"
	ginkgoSuite = "oci-conformance-ginkgo.test"
)

// suite returns the path of a conformance suite binary; a missing one
// fails the test.
func suite(t *testing.T, name string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", ".tools", "bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the conformance suite %s is not built (make test builds it into .tools/bin): %v", name, err)
	}
	return path
}

// junit is the part of a JUnit report the tests read.
type junit struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Suites   []struct {
		Cases []struct {
			Name    string       `xml:"name,attr"`
			Failure *junitReason `xml:"failure"`
			Error   *junitReason `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// junitReason is why a test case failed.
type junitReason struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func (r *junitReason) String() string {
	s := strings.TrimSpace(r.Message + " " + r.Text)
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// failedCases names every test case of a JUnit report that failed, and
// why: the conformance suite marks one with status="failure" and says why
// in its system-out; other reports use failure or error elements.
func failedCases(data []byte) []string {
	var out []string
	dec := xml.NewDecoder(strings.NewReader(string(data)))
	var name, why string
	failed := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		switch el := tok.(type) {
		case xml.StartElement:
			switch el.Name.Local {
			case "testcase":
				name, why, failed = "", "", false
				for _, a := range el.Attr {
					switch {
					case a.Name.Local == "name":
						name = a.Value
					case a.Name.Local == "status" && (a.Value == "failure" || a.Value == "error"):
						failed = true
					}
				}
			case "failure", "error", "system-out":
				var r junitReason
				if dec.DecodeElement(&r, &el) == nil && why == "" {
					why = r.String()
				}
				if el.Name.Local == "system-out" {
					why += answeredBy(r.Text)
				}
				if el.Name.Local != "system-out" {
					failed = true
				}
			}
		case xml.EndElement:
			if el.Name.Local == "testcase" && failed {
				out = append(out, name+": "+why)
			}
		}
	}
}

// regionHeader finds the region the front door names on each response
// the suite printed ("X-Georeg-Region: [eastus]").
var regionHeader = regexp.MustCompile(`(?m)^\s*X-Georeg-Region: \[([a-z0-9-]+)\]`)

// answeredBy names, in order, the regions that answered a case's
// requests through the front door (" (answered by: eastus, westeurope)"),
// or "" when no response names one: which region served a wrong answer.
func answeredBy(out string) string {
	var names []string
	for _, m := range regionHeader.FindAllStringSubmatch(out, -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		return ""
	}
	return " (answered by: " + strings.Join(names, ", ") + ")"
}

// conformance is one run's count.
type conformance struct {
	target          string
	tests, failures int
}

// runMainSuite runs the main branch's suite against the registry at
// target (host:port) in repositories of its own, and reports its counts;
// a failure of the suite fails the test with the failing cases.
func runMainSuite(t *testing.T, target, repo string) conformance {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite(t, mainSuite))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OCI_REGISTRY="+target, "OCI_TLS=disabled", "OCI_LOG=error",
		"OCI_REPO1=conformance/"+repo+"/one", "OCI_REPO2=conformance/"+repo+"/two",
		"OCI_RESULTS_DIR="+filepath.Join(dir, "results"))
	out, runErr := cmd.CombinedOutput()
	data, err := os.ReadFile(filepath.Join(dir, "results", "junit.xml"))
	if err != nil {
		t.Fatalf("main suite against %s wrote no report (%v): %v\n%s", target, runErr, err, out)
	}
	var j junit
	if err := xml.Unmarshal(data, &j); err != nil {
		t.Fatal(err)
	}
	c := conformance{target: target, tests: j.Tests, failures: j.Failures + j.Errors}
	if c.failures > 0 || runErr != nil || c.tests < 800 {
		failed := failedCases(data)
		if len(failed) == 0 { // the suite's own words, then
			tail := string(out)
			if len(tail) > 3000 {
				tail = tail[len(tail)-3000:]
			}
			failed = []string{tail}
		}
		if len(failed) > 20 {
			failed = append(failed[:20], fmt.Sprintf("... %d more", len(failed)-20))
		}
		t.Errorf("main suite against %s: %d of %d tests failed (%v):\n  %s", target, c.failures, c.tests, runErr, strings.Join(failed, "\n  "))
	}
	return c
}

var ginkgoRan = regexp.MustCompile(`Ran (\d+) of (\d+) Specs`)
var ginkgoPassed = regexp.MustCompile(`(\d+) Passed \| (\d+) Failed`)

// runGinkgoSuite runs the v1.1 ginkgo suite (pull, push, content
// discovery, content management) against target and reports specs run
// and failed.
func runGinkgoSuite(t *testing.T, target, repo string) conformance {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite(t, ginkgoSuite))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OCI_ROOT_URL=http://"+target,
		"OCI_NAMESPACE=conformance/"+repo+"/ginkgo", "OCI_CROSSMOUNT_NAMESPACE=conformance/"+repo+"/mount",
		"OCI_TEST_PULL=1", "OCI_TEST_PUSH=1", "OCI_TEST_CONTENT_DISCOVERY=1", "OCI_TEST_CONTENT_MANAGEMENT=1",
		"OCI_HIDE_SKIPPED_WORKFLOWS=0", "OCI_REPORT_DIR="+dir, "NO_COLOR=1")
	out, runErr := cmd.CombinedOutput()
	text := regexp.MustCompile(`\x1b\[[0-9;]*m`).ReplaceAllString(string(out), "")
	ran, passed := ginkgoRan.FindStringSubmatch(text), ginkgoPassed.FindStringSubmatch(text)
	if ran == nil || passed == nil {
		t.Fatalf("ginkgo suite against %s printed no summary (%v):\n%s", target, runErr, text)
	}
	n, _ := strconv.Atoi(ran[1])
	failed, _ := strconv.Atoi(passed[2])
	if failed > 0 || runErr != nil || n < 70 {
		var lines []string
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, "[FAIL]") {
				lines = append(lines, strings.TrimSpace(l))
			}
		}
		t.Errorf("ginkgo suite against %s: %d of %d specs failed (%v):\n  %s", target, failed, n, runErr, strings.Join(lines, "\n  "))
	}
	return conformance{target: target, tests: n, failures: failed}
}

// TestConformanceOfTheWholeRegistry runs both OCI conformance suites
// against the registry users reach: `georeg up` through its front door
// and through each region's own port, with the default simulated
// distance and without it; and against a single `georeg serve` region,
// for comparison. Every run must have no failure.
func TestConformanceOfTheWholeRegistry(t *testing.T) {
	var all []string
	report := func(kind, where string, c conformance) {
		all = append(all, fmt.Sprintf("%-7s %-32s %-16s %4d tests, %d failed", kind, where, c.target, c.tests, c.failures))
	}
	t.Cleanup(func() { t.Logf("conformance:\n%s", strings.Join(all, "\n")) })

	single := startServer(t, filepath.Join(t.TempDir(), "single"))
	report("main", "one region (georeg serve)", runMainSuite(t, single.addr, "single"))
	report("ginkgo", "one region (georeg serve)", runGinkgoSuite(t, single.addr, "single"))

	for _, mode := range []struct {
		name string
		args []string
	}{{"distance", nil}, {"no-distance", []string{"--no-distance"}}} {
		t.Run(mode.name, func(t *testing.T) {
			startUp(t, mode.args...)
			for _, where := range []string{"front door", "eastus", "westeurope", "southeastasia"} {
				target := upRegions[where]
				if where == "front door" {
					target = upDoor
				}
				label := "georeg up " + mode.name + ", " + where
				repo := mode.name + "-" + strings.ReplaceAll(where, " ", "-")
				report("main", label, runMainSuite(t, target, repo))
				report("ginkgo", label, runGinkgoSuite(t, target, repo))
			}
		})
	}
}
