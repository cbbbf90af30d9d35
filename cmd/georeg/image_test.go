package main

import (
	"testing"

	"github.com/georeg/georeg/internal/mgmtapi"
)

// TestTheRegionWaitedForIsToldAsItAnswersItself: a wait's closing state
// says the region waited for as that region answered for itself (another
// region's view of it lags by a refresh), only when both answers describe
// the same manifest or delete.
func TestTheRegionWaitedForIsToldAsItAnswersItself(t *testing.T) {
	view := func(digest string, deleted bool, version string, states ...string) *mgmtapi.ImageStatus {
		st := &mgmtapi.ImageStatus{Digest: digest, Deleted: deleted, DeletedVersion: version}
		for i, s := range states {
			st.Regions = append(st.Regions, mgmtapi.RegionState{Name: []string{"eastus", "westeurope"}[i], State: s})
		}
		return st
	}
	for _, c := range []struct {
		name     string
		st, own  *mgmtapi.ImageStatus
		wantWest string
	}{
		{"same manifest: its own answer", view("sha256:a", false, "", "present", "pending"), view("sha256:a", false, "", "pending", "present"), "present"},
		{"another manifest there: the view as heard", view("sha256:a", false, "", "present", "pending"), view("sha256:b", false, "", "pending", "present"), "pending"},
		{"same delete: its own answer", view("", true, "7", "deleted", "present"), view("", true, "7", "present", "deleted"), "deleted"},
		{"another delete there: the view as heard", view("", true, "7", "deleted", "present"), view("", true, "5", "present", "deleted"), "present"},
		{"no entry for it in its own answer", view("sha256:a", false, "", "present", "pending"), view("sha256:a", false, "", "present"), "pending"},
	} {
		heard := c.st.Regions[1].State
		got := withOwnState(c.st, c.own, "westeurope")
		if got.Regions[1].State != c.wantWest || got.Regions[0].State != c.st.Regions[0].State {
			t.Errorf("%s: %+v, want westeurope %s and eastus as heard", c.name, got.Regions, c.wantWest)
		}
		if c.st.Regions[1].State != heard {
			t.Errorf("%s: the view given was changed in place", c.name)
		}
	}
}
