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
