package main

import (
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), c.in...)
		if got := median(in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Errorf("median reordered its argument: %v", in)
			}
		}
	}
}

// Each round's ratio is to the best other contender of that round, not of
// the run: a round the machine slowed counts against every contender.
func TestRoundRatiosCompareWithinARound(t *testing.T) {
	walls := [][]float64{
		{0.4, 1.0, 0.5},  // georeg
		{1.0, 2.0, 0.8},  // one peer
		{0.9, 4.0, 10.0}, // another
	}
	got := roundRatios(walls, 0.5, "the best peer")
	// 0.4/0.9, 1.0/2.0, 0.5/0.8: 0.44, 0.50, 0.62
	want := "per round / the best peer of that round: median 0.50x, 0.44-0.62x, <= 0.5x in 2 of 3"
	if !strings.HasSuffix(got, want) {
		t.Errorf("roundRatios = %q, want it to end %q", got, want)
	}
	if got := roundRatios([][]float64{{1, 2}}, 0.5, "the best peer"); got != "" {
		t.Errorf("roundRatios with no peer = %q, want none", got)
	}
}
