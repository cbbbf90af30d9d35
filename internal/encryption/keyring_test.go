package encryption_test

import (
	"reflect"
	"testing"

	"github.com/georeg/georeg/internal/encryption"
	"github.com/georeg/georeg/internal/meta"
)

// TestPlanKeys: what a keyring's maintenance does for the key service's
// current key version.
func TestPlanKeys(t *testing.T) {
	k := func(id, kek string) meta.DataKey { return meta.DataKey{ID: id, KEKID: kek} }
	for _, c := range []struct {
		name       string
		keys       []meta.DataKey
		kek        string
		rewrap     []string
		newCurrent bool
	}{
		{"no keys yet", nil, "v1", nil, false},
		{"all under the current version", []meta.DataKey{k("a", "v1"), k("b", "v1")}, "v1", nil, false},
		{"rotated by georeg: the current data key is under it", []meta.DataKey{k("a", "v1"), k("b", "v2")}, "v2", []string{"a"}, false},
		{"rotated in the KMS: a new current data key too", []meta.DataKey{k("a", "v1"), k("b", "v1")}, "v2", []string{"a", "b"}, true},
		{"half re-wrapped before a restart", []meta.DataKey{k("a", "v2"), k("b", "v1"), k("c", "v2")}, "v2", []string{"b"}, false},
	} {
		p := encryption.PlanKeys(c.keys, c.kek)
		var ids []string
		for _, dk := range p.Rewrap {
			ids = append(ids, dk.ID)
		}
		if !reflect.DeepEqual(ids, c.rewrap) || p.NewCurrent != c.newCurrent {
			t.Errorf("%s: rewrap %v new %v, want %v %v", c.name, ids, p.NewCurrent, c.rewrap, c.newCurrent)
		}
	}
}
