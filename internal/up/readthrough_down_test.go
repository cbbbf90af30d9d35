package up_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/up"
)

// TestAMissWithAHungPeerWhoseFeedIsDownIsBounded: eastus's link to
// westeurope is a black hole (connections hang). Once eastus's follower
// of westeurope has failed (its status says unreachable) and nothing
// succeeded for more than half the 15 s idle bound, a pull of an
// image no region holds asks westeurope with 2 s, not the 15 s idle
// bound (nor the 5 s a connection to it takes to fail), and answers MANIFEST_UNKNOWN naming westeurope as unreachable.
func TestAMissWithAHungPeerWhoseFeedIsDownIsBounded(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), Distance: up.Links(link.Shape{})})
	east := reg.ByName["eastus"].URL
	reg.Link("eastus", "westeurope").Set(link.BlackHole)
	eventually(t, 90*time.Second, func() error {
		_, _, body := do(t, "GET", east+"/_georeg/v1/status", "", nil)
		var st struct {
			Peers []struct {
				Peer, State string
				LastSuccess time.Time
			}
		}
		if err := json.Unmarshal(body, &st); err != nil {
			return err
		}
		for _, p := range st.Peers {
			// Down for good: failing, and nothing succeeded for more than
			// half the idle bound (a single failed request is not enough).
			if p.Peer == "westeurope" && p.State == "unreachable" && time.Since(p.LastSuccess) > 8*time.Second {
				return nil
			}
		}
		return fmt.Errorf("eastus does not see westeurope's feed down yet: %s", body)
	})
	start := time.Now()
	code, _, body := do(t, "GET", east+"/v2/nothere/app/manifests/v1", "", nil)
	took := time.Since(start)
	if code != 404 || !strings.Contains(string(body), "MANIFEST_UNKNOWN") || !strings.Contains(string(body), "westeurope") {
		t.Fatalf("a miss with westeurope hung: %d %s", code, body)
	}
	t.Logf("the miss took %s", took)
	// A bound, not a speed: 2 s for the hung peer; without it the ask
	// waits for the connection's own timeout (5 s here, 2026-12-04) or
	// the 15 s idle bound.
	if took > 4*time.Second {
		t.Fatalf("the miss waited %s on a peer whose feed is down", took)
	}
}
