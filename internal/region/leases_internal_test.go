package region

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestLeasesNestAndEndWithTheirLastRelease: a blob leased twice stays
// leased until both leases are released, a release called twice counts
// once, and nothing is left behind once the last one ends.
func TestLeasesNestAndEndWithTheirLastRelease(t *testing.T) {
	r := &Region{}
	d, other := digest.FromString("leased"), digest.FromString("other")
	leased := func(d digest.Digest) bool {
		held, err := r.unlessLeased(d, func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return held
	}
	first := r.Lease(d)
	second := r.Lease(d)
	if !leased(d) || leased(other) {
		t.Fatal("a leased blob is not leased, or another one is")
	}
	first()
	first() // once only
	if !leased(d) {
		t.Fatal("a blob leased twice is free after one release (and the same release twice)")
	}
	second()
	if leased(d) {
		t.Fatal("a blob is leased after its last release")
	}
	if len(r.leases.count) != 0 {
		t.Fatalf("released leases left %v behind", r.leases.count)
	}
	ran := false
	if _, err := r.unlessLeased(d, func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatal("the sweep's function did not run for a blob no longer leased")
	}
}
