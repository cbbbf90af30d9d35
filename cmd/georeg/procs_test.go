package main

import "testing"

func TestARegistryProcessRunsWithASpareP(t *testing.T) {
	for _, c := range []struct {
		cores int
		set   bool
		want  int
	}{
		{cores: 2, want: 3},
		{cores: 1, want: 2},
		{cores: 64, want: 65},
		{cores: 2, set: true, want: 0}, // the operator's GOMAXPROCS is kept
		{cores: 0, want: 0},
	} {
		if got := procsWithSpare(c.cores, c.set); got != c.want {
			t.Errorf("procsWithSpare(%d, %v) = %d, want %d", c.cores, c.set, got, c.want)
		}
	}
}
