package region

import "testing"

func TestCrossed(t *testing.T) {
	repo := quotaUse{Scope: "a/b", Limit: 100, Used: 60}
	registry := quotaUse{Scope: RegistryScope, Limit: 1000, Used: 990}
	over := quotaUse{Scope: "a/b", Limit: 100, Used: 150} // a limit lowered, or replication
	for _, tc := range []struct {
		name   string
		uses   []quotaUse
		adding int64
		want   string // the scope crossed, "" none
	}{
		{"no quota", nil, 1 << 40, ""},
		{"under", []quotaUse{repo}, 39, ""},
		{"up to the limit exactly", []quotaUse{repo}, 40, ""},
		{"one byte over", []quotaUse{repo}, 41, "a/b"},
		{"the repository's fits, the registry's does not", []quotaUse{repo, registry}, 11, RegistryScope},
		{"the first crossed is named", []quotaUse{repo, registry}, 50, "a/b"},
		{"already over: adding anything crosses", []quotaUse{over}, 1, "a/b"},
		{"already over: adding nothing does not", []quotaUse{over}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, ok := crossed(tc.uses, tc.adding)
			if got := map[bool]string{true: u.Scope}[ok]; got != tc.want {
				t.Fatalf("crossed %q, want %q", got, tc.want)
			}
		})
	}
}
