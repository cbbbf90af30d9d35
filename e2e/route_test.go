package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// startRoute runs `georeg route` before regions: clients from 127.0.0.1
// belong to eastus, .2 to westeurope, .3 to southeastasia. extra is more
// of the door's YAML configuration (top-level keys).
func startRoute(t *testing.T, regions map[string]*server, extra ...string) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`regions:
  - {name: eastus, endpoint: "http://%s"}
  - {name: westeurope, endpoint: "http://%s"}
  - {name: southeastasia, endpoint: "http://%s"}
locations:
  - {cidr: 127.0.0.1/32, region: eastus}
  - {cidr: 127.0.0.2/32, region: westeurope}
  - {cidr: 127.0.0.3/32, region: southeastasia}
fallback:
  westeurope: [eastus, southeastasia]
`, regions["eastus"].addr, regions["westeurope"].addr, regions["southeastasia"].addr) + strings.Join(extra, "")
	file := filepath.Join(dir, "route.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	s := &server{t: t, addr: addr, data: filepath.Join(dir, "route"), sub: "route",
		args: []string{"--config", file, "--listen", addr, "--log-level", "warn"}}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// TestFailoverWhenARegionIsKilled: westeurope is killed with SIGKILL
// while its clients pull through the front door; from 3 s after the kill
// on no pull fails, and they are served by another region.
func TestFailoverWhenARegionIsKilled(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope", "southeastasia")
	door := startRoute(t, regions)
	c := clientFrom("127.0.0.2")
	d := pushImage(t, regions["westeurope"].addr, "fail/app", "v1", "failover")
	converged(t, regions, "fail/app", map[string]string{"v1": d.String()}, 60*time.Second)

	pull := func() (string, error) {
		resp, err := c.Get("http://" + door.addr + "/v2/fail/app/manifests/v1")
		if err != nil {
			return "", err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != d.String() {
			return resp.Header.Get("X-Georeg-Region"), fmt.Errorf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Georeg-Region"), nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for { // the front door has probed and sends this client home
		if region, err := pull(); err == nil && region == "westeurope" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the client never reached westeurope")
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
	regions["westeurope"].kill9()
	killed := time.Now()
	var mu sync.Mutex
	var late []string
	early := 0
	var servedBy = map[string]int{}
	for time.Since(killed) < 6*time.Second {
		region, err := pull()
		mu.Lock()
		if err != nil && time.Since(killed) > 3*time.Second {
			late = append(late, fmt.Sprintf("%s after the kill: %v", time.Since(killed).Round(time.Millisecond), err))
		} else if err != nil {
			early++
		}
		if err == nil {
			servedBy[region]++
		}
		mu.Unlock()
		time.Sleep(10 * time.Millisecond) // pacing of a bounded loop
	}
	t.Logf("pulls after the kill: %v served, %d failed within the first 3 s", servedBy, early)
	if len(late) > 0 {
		t.Fatalf("%d pulls failed more than 3 s after the kill: %s", len(late), strings.Join(late[:min(3, len(late))], "; "))
	}
	if servedBy["westeurope"] > 0 || servedBy["eastus"] == 0 {
		t.Fatalf("after the kill pulls were served by %v; want eastus (westeurope's fallback)", servedBy)
	}
	// The door's metrics say so: westeurope is not routable and its
	// clients' requests went to eastus as failovers.
	m := metricsOf(t, door.addr)
	if v := m[`georeg_frontdoor_region_routable{region="westeurope"}`]; v != 0 {
		t.Errorf("georeg_frontdoor_region_routable for the killed westeurope: %v, want 0", v)
	}
	if v := m[`georeg_frontdoor_failovers_total{from="westeurope",to="eastus"}`]; v < float64(servedBy["eastus"]) {
		t.Errorf("failovers from westeurope to eastus counted %v, for %d pulls eastus served", v, servedBy["eastus"])
	}
	// The dashboard, through the door, says so too: the killed region
	// Down and routed nothing, the others Ready and routed.
	resp, err := c.Get("http://" + door.addr + "/_georeg/v1/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var dash struct {
		Regions []struct{ Name, State, Routed string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&dash); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the dashboard through the door after the kill: %d %v", resp.StatusCode, err)
	}
	want := map[string]string{"eastus": "Ready on", "southeastasia": "Ready on", "westeurope": "Down off: down"}
	for _, r := range dash.Regions {
		if got := r.State + " " + r.Routed; got != want[r.Name] {
			t.Errorf("the dashboard shows %s %q after westeurope was killed, want %q", r.Name, got, want[r.Name])
		}
	}
}

// metricsOf reads the /metrics of the georeg process at addr (the front
// door, a region) as name{labels} -> value.
func metricsOf(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s's /metrics does not parse: %v", addr, err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			}
		}
	}
	return out
}
