package replicate

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestEveryRegionFetchesAnOriginsBlobsFromTheOriginOrOneOfItsRelays: for
// any origin and any number of regions, relayFanout regions fetch from
// the origin, every other through one of them (its nearest by measured
// round trip), no relay goes through another relay, and every region
// computes the same relays.
func TestEveryRegionFetchesAnOriginsBlobsFromTheOriginOrOneOfItsRelays(t *testing.T) {
	noRTT := func(string) (time.Duration, bool) { return 0, false }
	for n := 1; n <= 9; n++ {
		var members []string
		for i := range n {
			members = append(members, fmt.Sprintf("r%d", i+1))
		}
		for _, origin := range members {
			relays := relayFirst(origin, members)
			if want := min(relayFanout, n-1); len(relays) != want {
				t.Fatalf("%d regions, origin %s: %d relays %v, want %d", n, origin, len(relays), relays, want)
			}
			shuffled := slices.Clone(members)
			slices.Reverse(shuffled)
			if again := relayFirst(origin, shuffled); !slices.Equal(again, relays) {
				t.Fatalf("the relays depend on the order members are listed in: %v, %v", relays, again)
			}
			direct := 0
			for _, self := range members {
				parent := relayParent(origin, self, members, noRTT)
				switch {
				case self == origin && parent != "":
					t.Fatalf("the origin %s fetches its own blobs through %s", origin, parent)
				case parent == "" && self != origin:
					direct++
					if !slices.Contains(relays, self) {
						t.Fatalf("%s fetches from the origin %s but is not one of its relays %v", self, origin, relays)
					}
				case parent != "":
					if !slices.Contains(relays, parent) || relayParent(origin, parent, members, noRTT) != "" {
						t.Fatalf("%s fetches %s's blobs through %s, not a relay that fetches from the origin", self, origin, parent)
					}
				}
			}
			if direct > relayFanout {
				t.Fatalf("%d regions fetch from the origin %s, more than %d", direct, origin, relayFanout)
			}
		}
	}
	// Of the relays, the nearest measured one; a region not among the
	// members (it is leaving, or joining) fetches from the origin.
	members := []string{"r1", "r2", "r3", "r4", "r5", "r6"}
	relays := relayFirst("r1", members)
	var other string
	for _, m := range members[1:] {
		if !slices.Contains(relays, m) {
			other = m
			break
		}
	}
	rtt := map[string]time.Duration{relays[0]: 80 * time.Millisecond, relays[1]: 5 * time.Millisecond}
	measured := func(name string) (time.Duration, bool) { d, ok := rtt[name]; return d, ok }
	if got := relayParent("r1", other, members, measured); got != relays[1] {
		t.Fatalf("%s relays through %s, want the nearer %s", other, got, relays[1])
	}
	if got := relayParent("r1", "r9", members, measured); got != "" {
		t.Fatalf("a region that is not a member relays through %s", got)
	}
}

// TestAFetchPlanAsksItsRelayOnceThenGoesOnWithoutIt: the relay is tried
// first, once; failing or not holding the blob, the plan fetches from the
// origin (or a holder) as it would without one.
func TestAFetchPlanAsksItsRelayOnceThenGoesOnWithoutIt(t *testing.T) {
	for _, fail := range []error{errGone, errPeer} {
		f := newFetchPlan("eastus", []string{"westeurope", "eastus"}, 100)
		f.relay = "westeurope"
		if st := f.next(); st.from != "westeurope" || !st.relay {
			t.Fatalf("first step %+v, want the relay", st)
		}
		f.failedFrom("westeurope", fail)
		st := f.next()
		for len(st.ask) > 0 {
			for _, p := range st.ask {
				f.asked(p, false)
			}
			st = f.next()
		}
		if st.from != "eastus" || st.relay {
			t.Fatalf("after the relay failed (%v): %+v, want the origin", fail, st)
		}
	}
}

// TestAPeerIsARelayCandidateWhileItAnswersOrBeforeItIsJudged: relays are
// chosen among peers that answered their stats lately, and among peers
// not followed long enough to tell (so the first pushes after a start do
// not choose among the few that answered first).
func TestAPeerIsARelayCandidateWhileItAnswersOrBeforeItIsJudged(t *testing.T) {
	now := time.Unix(1000, 0)
	ago := func(s float64) time.Time { return now.Add(-time.Duration(s * float64(time.Second))) }
	var never time.Time
	const d = 6 * time.Second
	for _, c := range []struct {
		name            string
		since, answered time.Time
		want            bool
	}{
		{"followed just now, no answer yet", ago(0.1), never, true},
		{"followed 5 s ago, no answer yet (a slow first answer)", ago(5), never, true},
		{"followed longer than the window ago and never answered", ago(7), never, false},
		{"answered lately", ago(30), ago(1), true},
		{"answered longer than the window ago", ago(30), ago(7), false},
		{"answered at the window's edge", ago(30), ago(6), false},
	} {
		if got := relayCandidate(now, c.since, c.answered, d); got != c.want {
			t.Errorf("%s: candidate %v, want %v", c.name, got, c.want)
		}
	}
}
