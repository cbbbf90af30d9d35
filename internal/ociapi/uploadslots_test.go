package ociapi

import (
	"testing"

	"github.com/georeg/georeg/internal/ocierr"
)

// TestUploadSlotsPerUserAndNode: a user's uploads stop at the per-client
// limit while others' go on; anonymous ones count against the node only;
// a release gives exactly one slot back, however often it is called.
func TestUploadSlotsPerUserAndNode(t *testing.T) {
	u := newUploadSlots(5, 2)
	a1, err1 := u.take("alice")
	_, err2 := u.take("alice")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := u.take("alice"); !ocierr.TooManyRequests.Is(err) {
		t.Fatalf("alice's third: %v", err)
	}
	if _, err := u.take("bob"); err != nil {
		t.Fatalf("bob's first: %v", err)
	}
	for i := range 2 {
		if _, err := u.take(""); err != nil {
			t.Fatalf("anonymous %d: %v", i, err)
		}
	}
	if _, err := u.take(""); !ocierr.TooManyRequests.Is(err) {
		t.Fatalf("a sixth upload on a node of five: %v", err)
	}
	a1()
	a1()
	if _, err := u.take("alice"); err != nil {
		t.Fatalf("alice after one ended: %v", err)
	}
	if _, err := u.take("bob"); !ocierr.TooManyRequests.Is(err) {
		t.Fatalf("a release given back twice: %v", err)
	}
}
