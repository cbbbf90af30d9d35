package metrics

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestGrafanaDashboardQueriesOnlyMetricsThatExist: every georeg_ metric a
// panel of docs/grafana-dashboard.json queries is one a node or the front
// door registers, so no panel stays empty for a misspelt name.
func TestGrafanaDashboardQueriesOnlyMetricsThatExist(t *testing.T) {
	node := NewNode("eastus")
	node.WatchReplication("eastus", func(context.Context) (Progress, error) { return Progress{}, nil })
	node.WatchTraffic(func() []TrafficCount { return nil })
	node.WatchStorage(func() (Storage, bool) { return Storage{}, true })
	door := NewDoor()
	known := map[string]bool{}
	for _, reg := range []*prometheus.Registry{node.reg, door.reg} {
		ch := make(chan *prometheus.Desc, 256)
		go func() { reg.Describe(ch); close(ch) }()
		for d := range ch {
			if m := regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String()); m != nil {
				known[m[1]] = true
			}
		}
	}
	if len(known) < 10 {
		t.Fatalf("only %d metrics registered: %v", len(known), known)
	}
	board, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`georeg_[a-z_]+`).FindAllString(string(board), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard queries no georeg_ metric")
	}
	for _, name := range used {
		base := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !known[name] && !known[base] {
			t.Errorf("the dashboard queries %s, which no node or door registers", name)
		}
	}
}
