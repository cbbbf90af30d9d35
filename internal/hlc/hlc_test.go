package hlc

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	frozen := time.UnixMilli(1_700_000_000_000)
	c := New("eastus", func() time.Time { return frozen })
	t.Run("versions from a frozen wall clock still increase", func(t *testing.T) {
		a, b := c.Now(), c.Now()
		if !a.Less(b) {
			t.Fatalf("%v not before %v", a, b)
		}
	})
	t.Run("a version observed from the future is passed by the next write", func(t *testing.T) {
		future := Version{Time: (frozen.UnixMilli() + 5000) << logicalBits, Region: "westeurope"}
		c.Observe(future)
		if v := c.Now(); !future.Less(v) {
			t.Fatalf("%v not after observed %v", v, future)
		}
	})
	t.Run("equal times order by region name in every region", func(t *testing.T) {
		a := Version{Time: 7, Region: "eastus"}
		b := Version{Time: 7, Region: "westeurope"}
		if !a.Less(b) || b.Less(a) {
			t.Fatal("tie-break by region name broken")
		}
	})
	t.Run("String and ParseVersion round-trip", func(t *testing.T) {
		v := c.Now()
		got, err := ParseVersion(v.String())
		if err != nil || got != v {
			t.Fatalf("ParseVersion(%q) = %v, %v", v.String(), got, err)
		}
		for _, bad := range []string{"", "12", "@eastus", "x@eastus", "-1@eastus", "5@"} {
			if _, err := ParseVersion(bad); err == nil {
				t.Errorf("ParseVersion(%q) accepted", bad)
			}
		}
	})
}

func TestVersionOrderAndForm(t *testing.T) {
	a := Version{Time: 10, Region: "eastus"}
	for _, c := range []struct {
		name string
		v, w Version
		less bool
	}{
		{"earlier time first", a, Version{Time: 11, Region: "aaa"}, true},
		{"later time after", Version{Time: 11, Region: "aaa"}, a, false},
		{"same time: region name breaks the tie", a, Version{Time: 10, Region: "westeurope"}, true},
		{"same time, later region name after", Version{Time: 10, Region: "westeurope"}, a, false},
		{"a version is not before itself", a, a, false},
	} {
		if got := c.v.Less(c.w); got != c.less {
			t.Errorf("%s: %v.Less(%v) = %v", c.name, c.v, c.w, got)
		}
	}
	if !(Version{}).IsZero() || a.IsZero() || (Version{Region: "eastus"}).IsZero() || (Version{Time: 1}).IsZero() {
		t.Error("IsZero: only the zero version is zero")
	}
	for s, ok := range map[string]bool{"0@eastus": true, "12@westeurope": true, "-1@eastus": false, "12": false, "12@": false, "x@eastus": false} {
		v, err := ParseVersion(s)
		if (err == nil) != ok || (ok && v.String() != s) {
			t.Errorf("ParseVersion(%q) = %v, %v; want ok %v", s, v, err, ok)
		}
	}
}

// TestTheClockReadsTheWallClockItIsGiven: versions carry the injected
// wall time, not the machine's.
func TestTheClockReadsTheWallClockItIsGiven(t *testing.T) {
	at := time.UnixMilli(1_000_000_000_000) // 2001
	v := New("eastus", func() time.Time { return at }).Now()
	if !v.Wall().Equal(at) || v.Region != "eastus" {
		t.Fatalf("version %v has wall time %v, want %v", v, v.Wall(), at)
	}
	if New("eastus", nil).Now().Wall().Before(at) {
		t.Fatal("a clock without a wall clock of its own reads time.Now")
	}
}
