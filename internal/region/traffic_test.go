package region_test

import (
	"context"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/region"
)

// TestTrafficCountsSurviveARestartAndAddUpAcrossNodes: counts are kept in
// memory on the request path and recorded when the node stops (and every
// 10 s); a restarted node reads them back, and what two nodes of a region
// counted (two handles on one store, as nodes on PostgreSQL) adds up.
func TestTrafficCountsSurviveARestartAndAddUpAcrossNodes(t *testing.T) {
	dir := t.TempDir()
	cfg := region.Config{Name: "eastus", DataDir: dir, Node: "node-a"}
	a := openRegion(t, cfg)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.RunTraffic(ctx) }()
	a.CountTraffic(region.TrafficServed, "", 1000)
	a.CountTraffic(region.TrafficServed, "", 500)
	a.CountTraffic(region.TrafficReceived, "westeurope", 7000)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a.Close()

	cfg.Node = "node-b"
	b := openRegion(t, cfg)
	defer b.Close()
	b.CountTraffic(region.TrafficServed, "", 25) // not yet recorded: TrafficSince records it first
	got, err := b.TrafficSince(t.Context(), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := map[[2]string]int64{{region.TrafficServed, ""}: 1525, {region.TrafficReceived, "westeurope"}: 7000}
	if len(got) != len(want) {
		t.Fatalf("traffic %+v, want %v", got, want)
	}
	for _, tr := range got {
		if want[[2]string{tr.Kind, tr.Peer}] != tr.Bytes {
			t.Fatalf("traffic %+v, want %v", got, want)
		}
	}
	if totals := b.TrafficTotals(); len(totals) != 1 || totals[0] != (meta.Traffic{Kind: region.TrafficServed, Bytes: 25}) {
		t.Fatalf("node b's totals since it started: %+v", totals)
	}
}
