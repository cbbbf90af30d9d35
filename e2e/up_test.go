package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `georeg up` listens where the README says: the front door on
// 127.0.0.1:5000, the regions on 5001-5003. Tests that run it run one at a
// time (this package's tests are not parallel).
const upDoor = "127.0.0.1:5000"

var upRegions = map[string]string{"eastus": "127.0.0.1:5001", "westeurope": "127.0.0.1:5002", "southeastasia": "127.0.0.1:5003"}

// startUp runs `georeg up` with args on a fresh data directory, waits
// until the front door answers and every region is Ready, and kills it
// when the test ends.
func startUp(t *testing.T, args ...string) *server {
	t.Helper()
	data := filepath.Join(t.TempDir(), "georeg-data")
	s := &server{t: t, addr: upDoor, data: data, sub: "up", args: append([]string{"--data", data, "--log-level", "warn"}, args...)}
	s.start()
	t.Cleanup(s.kill)
	s.logOnFailure("georeg up")
	t.Cleanup(func() { // before the kill: where the door sent requests
		if t.Failed() {
			t.Logf("the front door's routing:\n%s", doorRouting())
		}
	})
	// As the README has a user wait: for georeg up's line for each region
	// turning Ready, printed once the front door has seen it so. Before
	// that, eastus's clients may be sent to another region and moved back,
	// and a read just after the move may miss a write made before it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := upReportedReady(s.logPath())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("georeg up: not every region reported Ready within 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
	return s
}

// doorRouting returns the front door's routing counters (requests per
// region and reason, failovers), read within a bound, or why not.
func doorRouting() string {
	b, err := bodyOf("http://"+upDoor+"/metrics", 4<<20)
	if err != nil {
		return err.Error()
	}
	var keep []string
	for _, l := range strings.Split(b, "\n") {
		if strings.HasPrefix(l, "georeg_frontdoor_requests_total") || strings.HasPrefix(l, "georeg_frontdoor_failovers_total") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// upReportedReady reports nil once the output of georeg up, in the file at
// path, has its line for every region turning Ready ("  eastus is Ready
// (0.4 s after start)"): the region is Ready and the front door has seen
// it so.
func upReportedReady(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for name := range upRegions {
		if !strings.Contains(string(b), "  "+name+" is Ready (") {
			return fmt.Errorf("georeg up has not reported %s Ready", name)
		}
	}
	return nil
}

// regionReady reports nil when the region at addr says it is Ready.
func regionReady(addr string) error {
	resp, err := http.Get("http://" + addr + "/_georeg/v1/status")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var st struct{ State string }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return err
	}
	if st.State != "Ready" {
		return fmt.Errorf("state %s", st.State)
	}
	return nil
}
