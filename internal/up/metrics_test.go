package up_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/up"
)

// metric reads one sample of name whose labels include want from the
// /metrics of base: a counter's or gauge's value, a histogram's count; 0
// when there is none yet.
func metric(t *testing.T, base, name string, want map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s/metrics does not parse: %v", base, err)
	}
	f, ok := families[name]
	if !ok {
		return 0
	}
	sum := 0.0
	for _, m := range f.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// TestMetricsMoveWithPushesReplicationWebhooksAndFailover: a push counts
// in eastus's request metrics, its replication in westeurope's lag
// histogram and applied counter, its webhook in the delivery counter, and
// routing eastus off counts failovers at the front door.
func TestMetricsMoveWithPushesReplicationWebhooksAndFailover(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), FrontDoor: "127.0.0.1:0", Webhooks: fastWebhooks})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	rc := startReceiver(t, reg, nil)
	createWebhook(t, reg, east, "metricshook", mgmtapi.WebhookBody{URI: ptr(receiverURL(rc)), Actions: []string{"push"}, Location: ptr("eastus")}, rc)

	puts := map[string]string{"route": "manifest", "method": "PUT", "code": "201", "region": "eastus"}
	putsBefore := metric(t, east, "georeg_http_requests_total", puts)
	lagBefore := metric(t, west, "georeg_replication_lag_seconds", map[string]string{"peer": "eastus"})
	img := push(t, east, "metrics/app", "v1", "metrics", 4<<10)
	if got := metric(t, east, "georeg_http_requests_total", puts) - putsBefore; got != 1 {
		t.Errorf("manifest PUT 201s counted: %v, want 1", got)
	}
	if metric(t, east, "georeg_http_received_bytes_total", map[string]string{"route": "manifest"}) == 0 {
		t.Error("no manifest bytes received counted")
	}
	tagArrives(t, west, "metrics/app", "v1", img.manifest)
	eventually(t, 10*time.Second, func() error {
		if got := metric(t, west, "georeg_replication_lag_seconds", map[string]string{"peer": "eastus"}) - lagBefore; got < 1 {
			return fmt.Errorf("westeurope's lag histogram from eastus grew by %v", got)
		}
		if metric(t, west, "georeg_replication_applied_total", map[string]string{"peer": "eastus", "kind": "blob"}) < 2 {
			return fmt.Errorf("westeurope counts fewer than 2 blobs applied from eastus")
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		if got := metric(t, east, "georeg_webhook_deliveries_total", map[string]string{"action": "push", "outcome": "delivered"}); got != 1 {
			return fmt.Errorf("webhook deliveries counted: %v", got)
		}
		return nil
	})
	if metric(t, west, "georeg_region_ready", nil) != 1 {
		t.Error("westeurope's ready gauge is not 1")
	}
	if metric(t, west, "georeg_replication_backlog_events", map[string]string{"peer": "eastus"}) != 0 {
		t.Error("westeurope reports a backlog from eastus after catching up")
	}

	// Failover: eastus's routing off; a client of eastus (127.0.0.1) is
	// sent to westeurope, its nearest fallback.
	door := reg.FrontDoor
	home := map[string]string{"region": "eastus", "reason": "home"}
	eventually(t, 10*time.Second, func() error {
		before := metric(t, door, "georeg_frontdoor_requests_total", home)
		if code, _, _ := do(t, http.MethodGet, door+"/v2/", "", nil); code != 200 {
			return fmt.Errorf("door: %d", code)
		}
		if metric(t, door, "georeg_frontdoor_requests_total", home) != before+1 {
			return fmt.Errorf("a request of an eastus client is not counted as home")
		}
		return nil
	})
	if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/replications/eastus", "application/json", []byte(`{"regionEndpointEnabled":false}`)); code != 200 {
		t.Fatalf("routing off: %d %s", code, out)
	}
	eventually(t, 15*time.Second, func() error {
		if metric(t, door, "georeg_frontdoor_region_routable", map[string]string{"region": "eastus"}) != 0 {
			return fmt.Errorf("the door still routes to eastus")
		}
		return nil
	})
	failovers := metric(t, door, "georeg_frontdoor_failovers_total", map[string]string{"from": "eastus"})
	code, h, _ := do(t, http.MethodGet, door+"/v2/", "", nil)
	if code != 200 || h.Get("X-Georeg-Region") == "eastus" {
		t.Fatalf("after routing eastus off: %d from %s", code, h.Get("X-Georeg-Region"))
	}
	if got := metric(t, door, "georeg_frontdoor_failovers_total", map[string]string{"from": "eastus", "to": h.Get("X-Georeg-Region")}) - failovers; got != 1 {
		t.Errorf("failovers counted: %v, want 1", got)
	}
	if metric(t, door, "georeg_frontdoor_requests_total", map[string]string{"region": h.Get("X-Georeg-Region"), "reason": "fallback"}) < 1 {
		t.Error("the request is not counted as a fallback")
	}
}
