package replicate

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestWhereSettlesOnTheNearestHolderWithoutWaitingForFartherPeers:
// read-through's question to the peers is settled once the nearest peer
// holding the manifest and every nearer peer answered; an unanswered
// (hung) farther peer does not hold it up, an unanswered nearer one does.
func TestWhereSettlesOnTheNearestHolderWithoutWaitingForFartherPeers(t *testing.T) {
	has := func(i int) peerAnswer { return peerAnswer{i: i, answered: true, d: "sha256:aa"} }
	gone := func(i int) peerAnswer { return peerAnswer{i: i, answered: true, err: fmt.Errorf("x: %w", errGone)} }
	down := func(i int) peerAnswer { return peerAnswer{i: i, answered: true, err: errors.New("timeout")} }
	hung := peerAnswer{}
	peers := []*source{{name: "near"}, {name: "mid"}, {name: "far"}}
	for _, c := range []struct {
		name        string
		got         []peerAnswer
		settled     bool
		first       string
		have, unrch []string
	}{
		{"the nearest holds it: the rest are not waited for", []peerAnswer{has(0), hung, hung}, true, "near", []string{"near"}, nil},
		{"a nearer peer has not answered: wait", []peerAnswer{hung, has(1), hung}, false, "mid", []string{"mid"}, nil},
		{"nearer ones lack it or failed: the holder settles it", []peerAnswer{gone(0), down(1), has(2)}, true, "far", []string{"far"}, []string{"mid"}},
		{"nobody holds it yet, one hung: wait", []peerAnswer{gone(0), gone(1), hung}, false, "", nil, nil},
		{"all answered, none holds it", []peerAnswer{gone(0), down(1), gone(2)}, false, "", nil, []string{"mid"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := nearestKnown(c.got); got != c.settled {
				t.Fatalf("settled = %v, want %v", got, c.settled)
			}
			first, _, have, unrch := pick(peers, c.got)
			name := ""
			if first != nil {
				name = first.name
			}
			if name != c.first || !slices.Equal(have, c.have) || !slices.Equal(unrch, c.unrch) {
				t.Fatalf("pick = %q %v %v, want %q %v %v", name, have, unrch, c.first, c.have, c.unrch)
			}
		})
	}
}
