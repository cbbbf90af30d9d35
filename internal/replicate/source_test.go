package replicate

import (
	"slices"
	"testing"
	"time"
)

// TestPeersAreAskedNearestFirstByMeasuredRoundTrip: the fetch plan and
// read-through ask peers in nearestFirst's order: measured round trips
// first, shortest first, then peers not measured yet in the
// configuration's order.
func TestPeersAreAskedNearestFirstByMeasuredRoundTrip(t *testing.T) {
	peer := func(name string, rtts ...time.Duration) *source {
		s := &source{name: name}
		for _, d := range rtts {
			s.observeRTT(d)
		}
		return s
	}
	for _, c := range []struct {
		name  string
		peers []*source
		want  []string
	}{
		{"none measured: the configuration's order", []*source{peer("a"), peer("b"), peer("c")}, []string{"a", "b", "c"}},
		{"measured first, shortest first", []*source{peer("a"), peer("far", 160*time.Millisecond), peer("b"), peer("near", 80*time.Millisecond)},
			[]string{"near", "far", "a", "b"}},
		{"an average, not the last answer", []*source{peer("steady", 90*time.Millisecond, 90*time.Millisecond), peer("spiky", 40*time.Millisecond, 40*time.Millisecond, 400*time.Millisecond)},
			[]string{"steady", "spiky"}},
	} {
		var got []string
		in := slices.Clone(c.peers)
		for _, s := range nearestFirst(c.peers) {
			got = append(got, s.name)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		if !slices.Equal(in, c.peers) {
			t.Errorf("%s: the slice given was changed", c.name)
		}
	}
}
