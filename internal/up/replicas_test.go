package up_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/node"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// TestARegionRegisteredInOneRegionIsFollowedByAll: a new region joins a
// running registry. It follows the existing regions (its configuration
// names them) and backfills what they hold; it is registered through
// eastus only, and every existing region learns of it through the
// replicated setting and follows it.
func TestARegionRegisteredInOneRegionIsFollowedByAll(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Secret: "s3cr3t", Regions: []up.RegionSpec{
		{Name: "eastus", Listen: "127.0.0.1:0"}, {Name: "westeurope", Listen: "127.0.0.1:0"}}})
	east, west := reg.ByName["eastus"], reg.ByName["westeurope"]
	before := push(t, east.URL, "join/app", "before", "before", 20_000)

	// The new region, on its own listener, following both.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Region.Name, cfg.Region.DataDir = "brazilsouth", t.TempDir()
	cfg.HTTP.Listen = l.Addr().String()
	cfg.Replication.Secret = "s3cr3t"
	cfg.Replication.Peers = []replicate.Peer{{Name: "eastus", Endpoint: east.URL}, {Name: "westeurope", Endpoint: west.URL}}
	n, err := node.Open(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-served })
	brazil := "http://" + l.Addr().String()

	value, _ := json.Marshal(replicate.ReplicaSetting{Endpoint: brazil, RegionEndpointEnabled: true, Created: time.Now()})
	if _, err := east.Node.Region.PutSetting(t.Context(), replicate.ReplicaKind, "brazilsouth", value); err != nil {
		t.Fatal(err)
	}
	// Backfill: what eastus held before brazilsouth existed arrives.
	eventually(t, 30*time.Second, func() error {
		if tagState(t, brazil, "join/app")["before"] != before.manifest.String() {
			return fmt.Errorf("brazilsouth has not backfilled join/app:before")
		}
		return nil
	})
	// Both existing regions follow brazilsouth: a push there reaches them.
	after := push(t, brazil, "join/app", "from-brazil", "from-brazil", 20_000)
	for _, r := range []*up.Region{east, west} {
		eventually(t, 30*time.Second, func() error {
			if tagState(t, r.URL, "join/app")["from-brazil"] != after.manifest.String() {
				return fmt.Errorf("%s does not follow brazilsouth", r.Name)
			}
			return nil
		})
	}
}
