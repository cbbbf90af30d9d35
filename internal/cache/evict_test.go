package cache

import (
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestEvictionTakesWhatNoRegionUsedAndKeepsWhatItHolds: a cached image
// is evicted when neither its storing nor any region's last pull is
// within the period; an index counts its platforms' pulls and keeps
// them; referrers go with their subject; only what this region sweeps is
// evicted, and what it keeps keeps its parts.
func TestEvictionTakesWhatNoRegionUsedAndKeepsWhatItHolds(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	after := 30 * 24 * time.Hour
	old, recent := now.Add(-40*24*time.Hour), now.Add(-2*24*time.Hour)
	d := func(s string) digest.Digest { return digest.FromString(s) }
	img := func(name string, stored time.Time) Held { return Held{Digest: d(name), Stored: stored, Sweep: true} }
	index := func(name string, stored time.Time, children ...string) Held {
		h := img(name, stored)
		for _, c := range children {
			h.Children = append(h.Children, d(c))
		}
		return h
	}
	referrer := func(name, subject string, stored time.Time) Held {
		h := img(name, stored)
		h.Subject = d(subject)
		return h
	}
	notMine := func(h Held) Held { h.Sweep = false; return h }
	names := func(ds []digest.Digest) []string {
		byDigest := map[digest.Digest]string{}
		for _, n := range []string{"a", "b", "idx", "amd64", "arm64", "sig", "sbom", "orphan-sig", "theirs"} {
			byDigest[d(n)] = n
		}
		out := []string{}
		for _, x := range ds {
			out = append(out, byDigest[x])
		}
		return out
	}
	for _, c := range []struct {
		name   string
		held   []Held
		pulled map[string]time.Time
		want   []string
	}{
		{"stored long ago, never pulled: evicted", []Held{img("a", old)}, nil, []string{"a"}},
		{"stored recently: kept, pulled or not", []Held{img("a", recent)}, nil, []string{}},
		{"stored long ago, pulled recently in some region: kept", []Held{img("a", old)}, map[string]time.Time{"a": recent}, []string{}},
		{"pulled, but longer ago than the period: evicted", []Held{img("a", old), img("b", old)}, map[string]time.Time{"a": old.Add(time.Hour)}, []string{"a", "b"}},
		{"an index used through one platform pulled by digest keeps both platforms",
			[]Held{index("idx", old, "amd64", "arm64"), img("amd64", old), img("arm64", old)}, map[string]time.Time{"arm64": recent}, []string{}},
		{"an unused index goes, indexes first",
			[]Held{img("amd64", old), index("idx", old, "amd64", "arm64"), img("arm64", old)}, nil, []string{"idx", "amd64", "arm64"}},
		{"referrers go with their subject, pulled or not",
			[]Held{img("a", old), referrer("sig", "a", recent), referrer("sbom", "a", old)}, map[string]time.Time{"sig": recent}, []string{"a", "sbom", "sig"}},
		{"referrers stay with a used subject, unpulled",
			[]Held{img("a", old), referrer("sig", "a", old)}, map[string]time.Time{"a": recent}, []string{}},
		{"a referrer whose subject is not held is judged by its own use",
			[]Held{referrer("orphan-sig", "gone", old)}, nil, []string{"orphan-sig"}},
		{"what this region does not sweep is kept, and keeps its platforms",
			[]Held{notMine(index("theirs", old, "amd64")), img("amd64", old), img("b", old)}, nil, []string{"b"}},
		{"nothing held", nil, nil, []string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pulled := map[digest.Digest]time.Time{}
			for n, at := range c.pulled {
				pulled[d(n)] = at
			}
			got := names(Untouched(c.held, pulled, now, after))
			want := append([]string{}, c.want...)
			// Indexes first; within each group by digest: compare as
			// groups.
			if !sameGroups(got, want, c.held, d) {
				t.Fatalf("evicted %v, want %v", got, want)
			}
		})
	}
}

// sameGroups reports whether got and want hold the same names, with
// every index of held before every other manifest in got.
func sameGroups(got, want []string, held []Held, d func(string) digest.Digest) bool {
	a, b := slices.Clone(got), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		return false
	}
	isIndex := map[string]bool{}
	for _, h := range held {
		if len(h.Children) > 0 {
			for _, n := range got {
				if d(n) == h.Digest {
					isIndex[n] = true
				}
			}
		}
	}
	seenOther := false
	for _, n := range got {
		if !isIndex[n] {
			seenOther = true
		} else if seenOther {
			return false
		}
	}
	return true
}
