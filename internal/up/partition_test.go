package up_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/georeg/georeg/internal/up"
)

// splitRegistry runs three regions whose links between eastus and
// westeurope (both ways) pass through toxiproxy, with anti-entropy slowed
// to an hour: partition(true) cuts them (connections cut, new ones
// refused), partition(false) heals. southeastasia stays linked to both:
// regions apply only what a peer originated, so it relays nothing across
// the partition.
func splitRegistry(t *testing.T) (*up.Registry, func(cut bool)) {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	var proxies []*toxiproxy.Proxy
	t.Cleanup(func() { // after the registry stopped (cleanups run last first)
		for _, p := range proxies {
			p.Stop()
		}
	})
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), AntiEntropyInterval: time.Hour,
		Link: func(from, to, u string) (string, error) {
			if (from == "eastus" && to == "westeurope") || (from == "westeurope" && to == "eastus") {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					return "", err
				}
				addr := l.Addr().String()
				l.Close()
				p := toxiproxy.NewProxy(server, from+"-"+to, addr, strings.TrimPrefix(u, "http://"))
				if err := p.Start(); err != nil {
					return "", err
				}
				proxies = append(proxies, p)
				return "http://" + addr, nil
			}
			return u, nil
		}})
	partition := func(cut bool) {
		t.Helper()
		for _, p := range proxies {
			if cut {
				p.Stop()
			} else if err := p.Start(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return reg, partition
}

// TestAPartitionedPeerConvergesAfterHealing cuts eastus and westeurope off
// from each other with toxiproxy (every connection between them, both
// ways) while both keep taking pushes, including to one tag; after the
// partition heals every region holds the same tags.
func TestAPartitionedPeerConvergesAfterHealing(t *testing.T) {
	reg, partition := splitRegistry(t)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL

	partition(true)
	for i := range 5 {
		push(t, east, "part/app", fmt.Sprintf("east-%d", i), fmt.Sprintf("east-%d", i), 4000)
		push(t, west, "part/app", fmt.Sprintf("west-%d", i), fmt.Sprintf("west-%d", i), 4000)
	}
	push(t, east, "part/app", "shared", "shared-east", 4000)
	push(t, west, "part/app", "shared", "shared-west", 4000)
	partition(false) // heal
	eventually(t, 60*time.Second, func() error {
		var states []string
		for _, r := range reg.Regions {
			st := tagState(t, r.URL, "part/app")
			if len(st) != 11 {
				return fmt.Errorf("%s has %d of 11 tags", r.Name, len(st))
			}
			states = append(states, fmt.Sprint(sorted(st)))
		}
		if states[0] != states[1] || states[1] != states[2] {
			return fmt.Errorf("regions differ:\n%s", strings.Join(states, "\n"))
		}
		return nil
	})
}
