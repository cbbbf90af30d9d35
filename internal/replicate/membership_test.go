package replicate

import "testing"

// TestRequiredPeerWaitsForARegisteredRegionUntilItsFeedSaysWhatItIs: a
// registered region whose Ready mark has not arrived is waited for until
// its feed first answers or fails, and then only if it said it has been
// Ready (a region that joins must not say Ready before it holds what a
// Ready region holds; two regions joining at once must not wait for each
// other).
func TestRequiredPeerWaitsForARegisteredRegionUntilItsFeedSaysWhatItIs(t *testing.T) {
	for _, tc := range []struct {
		name string
		pp   *peerProgress
		want bool
	}{
		{"never tried yet", nil, true},
		{"tracked, no answer yet", &peerProgress{}, true},
		{"answered: Ready", &peerProgress{Seen: true, PeerReady: true}, true},
		{"answered: still joining", &peerProgress{Seen: true}, false},
		{"unreachable, never said Ready", &peerProgress{FeedDown: true}, false},
		{"said Ready once, unreachable now", &peerProgress{FeedDown: true, PeerReady: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := requiredPeer(tc.pp); got != tc.want {
				t.Fatalf("requiredPeer = %t, want %t", got, tc.want)
			}
		})
	}
}

// TestTrackerKeepsThatAPeerSaidReady: one feed answer saying Ready is
// enough; a later one that omits it does not undo it.
func TestTrackerKeepsThatAPeerSaidReady(t *testing.T) {
	tr := newTracker()
	tr.fetched("westeurope", "http://w", 5, false, nil)
	if tr.peers["westeurope"].PeerReady {
		t.Fatal("Ready before the peer said so")
	}
	tr.fetched("westeurope", "http://w", 6, true, nil)
	tr.fetched("westeurope", "http://w", 7, false, nil)
	if !tr.peers["westeurope"].PeerReady {
		t.Fatal("forgot that the peer said it has been Ready")
	}
}
