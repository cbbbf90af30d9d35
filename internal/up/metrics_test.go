package up_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
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
	v, _ := sample(t, base, name, want)
	return v
}

// mustMetric is metric for a sample that must be there (a gauge read at
// scrape time, say): its absence fails the test instead of reading 0.
func mustMetric(t *testing.T, base, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := sample(t, base, name, want)
	if !ok {
		t.Fatalf("%s/metrics has no %s with labels %v", base, name, want)
	}
	return v
}

// sample is metric, and whether any sample matched.
func sample(t *testing.T, base, name string, want map[string]string) (float64, bool) {
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
		return 0, false
	}
	sum, found := 0.0, false
	for _, m := range f.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
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
	// Caught up: eastus's feed also carries what the push caused after it
	// (acknowledgements, the webhook's outbox), so the backlog reaches 0
	// once westeurope has applied those too.
	eventually(t, 10*time.Second, func() error {
		if n := mustMetric(t, west, "georeg_replication_backlog_events", map[string]string{"peer": "eastus"}); n != 0 {
			return fmt.Errorf("westeurope reports a backlog of %v records from eastus after catching up", n)
		}
		return nil
	})
	// Byte counts come from the peer, asked by the follower after it
	// applies (status itself asks no peer).
	eventually(t, 10*time.Second, func() error {
		if mustMetric(t, west, "georeg_backfill_bytes", map[string]string{"state": "applied"}) < float64(4<<10) {
			return fmt.Errorf("westeurope's backfill gauge counts fewer bytes applied than the layer it replicated")
		}
		return nil
	})

	// A chunked PATCH (no Content-Length) counts its bytes received.
	inBefore := metric(t, east, "georeg_http_received_bytes_total", map[string]string{"route": "upload"})
	code, h, _ := do(t, http.MethodPost, east+"/v2/metrics/app/blobs/uploads/", "", nil)
	if code != 202 {
		t.Fatalf("start upload: %d", code)
	}
	req, _ := http.NewRequest(http.MethodPatch, east+h.Get("Location"), io.MultiReader(strings.NewReader(strings.Repeat("x", 70_000))))
	req.ContentLength = -1 // sent chunked
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("chunked PATCH: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := metric(t, east, "georeg_http_received_bytes_total", map[string]string{"route": "upload"}) - inBefore; got != 70_000 {
		t.Errorf("a chunked PATCH of 70000 bytes counted %v bytes received", got)
	}

	// A garbage collection counts its run.
	gcBefore := metric(t, east, "georeg_gc_runs_total", map[string]string{"mode": "sweep", "outcome": "ok"})
	if code, _, out := do(t, http.MethodPost, east+"/_georeg/v1/gc", "", nil); code != 200 {
		t.Fatalf("gc: %d %s", code, out)
	}
	if got := metric(t, east, "georeg_gc_runs_total", map[string]string{"mode": "sweep", "outcome": "ok"}) - gcBefore; got != 1 {
		t.Errorf("gc runs counted: %v, want 1", got)
	}
	if _, ok := sample(t, east, "georeg_gc_freed_bytes_total", nil); !ok {
		t.Error("no georeg_gc_freed_bytes_total")
	}
	// Write transactions are counted (the collection wrote some), and
	// their wait for the write lock.
	if n := metric(t, east, "georeg_metadata_write_transactions_total", nil); n < 1 {
		t.Errorf("write transactions counted: %v", n)
	}
	if _, ok := sample(t, east, "georeg_metadata_write_lock_wait_seconds_total", nil); !ok {
		t.Error("no georeg_metadata_write_lock_wait_seconds_total")
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
		// Its fallback must be routable (a probe slowed by a loaded
		// machine can take it out for a round).
		if metric(t, door, "georeg_frontdoor_region_routable", map[string]string{"region": "westeurope"}) != 1 {
			return fmt.Errorf("the door does not route to westeurope")
		}
		return nil
	})
	// Failovers so far, per region they went to (polls while eastus was
	// not yet routable went elsewhere too).
	failovers := map[string]float64{}
	for _, to := range []string{"westeurope", "southeastasia"} {
		failovers[to] = metric(t, door, "georeg_frontdoor_failovers_total", map[string]string{"from": "eastus", "to": to})
	}
	code, h, _ = do(t, http.MethodGet, door+"/v2/", "", nil)
	if code != 200 || h.Get("X-Georeg-Region") == "eastus" {
		t.Fatalf("after routing eastus off: %d from %s (routable: westeurope %v, southeastasia %v)", code, h.Get("X-Georeg-Region"),
			metric(t, door, "georeg_frontdoor_region_routable", map[string]string{"region": "westeurope"}),
			metric(t, door, "georeg_frontdoor_region_routable", map[string]string{"region": "southeastasia"}))
	}
	if got := metric(t, door, "georeg_frontdoor_failovers_total", map[string]string{"from": "eastus", "to": h.Get("X-Georeg-Region")}) - failovers[h.Get("X-Georeg-Region")]; got != 1 {
		t.Errorf("failovers counted: %v, want 1", got)
	}
	if metric(t, door, "georeg_frontdoor_requests_total", map[string]string{"region": h.Get("X-Georeg-Region"), "reason": "fallback"}) < 1 {
		t.Error("the request is not counted as a fallback")
	}
}
