package mgmtapi

import "testing"

// TestTheDashboardShowsRoutingAsTheDoorDoesIt: a region is routed to only
// when routing is on and it answers, Ready; one out of space gets pulls
// only; otherwise it is off, saying why.
func TestTheDashboardShowsRoutingAsTheDoorDoesIt(t *testing.T) {
	for _, tc := range []struct {
		enabled, answered bool
		state             string
		writable          bool
		want              string
	}{
		{true, true, "Ready", true, "on"},
		{true, true, "Ready", false, "pulls only"},
		{false, true, "Ready", true, "off: turned off"},
		{false, false, "Down", true, "off: turned off"},
		{true, false, "Down", true, "off: down"},
		{true, false, "Creating", true, "off: down"},
		{true, true, "Syncing", true, "off: syncing"},
		{true, true, "Syncing", false, "off: syncing"},
	} {
		if got := effectiveRouting(tc.enabled, tc.answered, tc.state, tc.writable); got != tc.want {
			t.Errorf("enabled %t, answered %t, %s, writable %t: %q, want %q", tc.enabled, tc.answered, tc.state, tc.writable, got, tc.want)
		}
	}
}
