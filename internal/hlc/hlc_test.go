package hlc

import (
	"errors"
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

// TestAVersionFarAheadIsRefusedUntilTimeCatchesUp: a peer's version more
// than the max drift ahead is refused and does not move the clock; the
// same version is admitted once real time is within the drift; a time
// beyond 2^62 is not a version at all, so no clock can overflow.
func TestAVersionFarAheadIsRefusedUntilTimeCatchesUp(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	c := New("eastus", func() time.Time { return now })
	ahead := Version{Time: now.Add(DefaultMaxDrift+time.Second).UnixMilli() << logicalBits, Region: "westeurope"}
	if err := c.Admit(ahead); !errors.Is(err, ErrFuture) {
		t.Fatalf("a version 5m1s ahead: %v", err)
	}
	if c.Last() != 0 {
		t.Fatalf("a refused version moved the clock to %d", c.Last())
	}
	within := Version{Time: now.Add(DefaultMaxDrift).UnixMilli() << logicalBits, Region: "westeurope"}
	if err := c.Admit(within); err != nil || c.Last() != within.Time {
		t.Fatalf("a version 5m ahead: %v, clock %d", err, c.Last())
	}
	now = now.Add(time.Second)
	if err := c.Admit(ahead); err != nil || c.Last() != ahead.Time {
		t.Fatalf("the refused version a second later: %v", err)
	}
	if v := c.Now(); !ahead.Less(v) {
		t.Fatalf("the next version %s is not after the admitted %s", v, ahead)
	}
	c.SetMaxDrift(time.Minute)
	if err := c.Admit(Version{Time: now.Add(2*time.Minute).UnixMilli() << logicalBits, Region: "w"}); !errors.Is(err, ErrFuture) {
		t.Fatalf("a version 2m ahead with a 1m drift: %v", err)
	}
	for _, s := range []string{"9223372036854775807@mallory", "4611686018427387905@mallory"} {
		if _, err := ParseVersion(s); err == nil {
			t.Errorf("%s parses", s)
		}
	}
	if _, err := ParseVersion("4611686018427387904@w"); err != nil {
		t.Errorf("2^62 does not parse: %v", err)
	}
}
