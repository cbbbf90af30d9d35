package region

import (
	"fmt"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

func TestPlanTimeRestore(t *testing.T) {
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	v := func(minute int, region string) hlc.Version {
		return hlc.Version{Time: hlc.TimeAt(base.Add(time.Duration(minute) * time.Minute)), Region: region}
	}
	d := func(s string) digest.Digest { return digest.FromString(s) }
	set := func(tag, dg string, minute int) meta.TagMove {
		return meta.TagMove{Tag: tag, Digest: d(dg), Version: v(minute, "eastus")}
	}
	del := func(tag string, minute int) meta.TagMove {
		return meta.TagMove{Tag: tag, Deleted: true, Version: v(minute, "westeurope")}
	}
	none := func(tag string) meta.TagMove { return meta.TagMove{Tag: tag, Deleted: true} } // marker: no tag before
	history := []meta.TagMove{
		none("moved"), set("moved", "a", 0), set("moved", "b", 20), // a at 10:10, b now
		none("later"), set("later", "c", 30), // created after 10:10
		none("gone"), set("gone", "e", 0), del("gone", 20), // deleted since
		set("found", "f", -100), set("found", "g", 40), // its state found at the first recorded write
		none("same"), set("same", "s", 5), // unchanged
		none("raced"), set("raced", "x", 8), {Tag: "raced", Digest: d("y"), Version: v(8, "westeurope")}, // same ms: by region
	}
	now := map[string]meta.TagMove{
		"moved": set("moved", "b", 20), "later": set("later", "c", 30), "found": set("found", "g", 40), "same": set("same", "s", 5),
		"raced":   {Tag: "raced", Digest: d("y"), Version: v(8, "westeurope")},
		"quiet":   set("quiet", "q", -500), // never moved while history was kept: unchanged since
		"offline": set("offline", "o", 15), // set after 10:10 while history was not kept
	}
	show := func(steps []Step) string {
		var parts []string
		for _, s := range steps {
			name := func(x digest.Digest) string {
				for _, c := range "abcefgosqxy" {
					if x == d(string(c)) {
						return string(c)
					}
				}
				return "-"
			}
			parts = append(parts, fmt.Sprintf("%s:%s>%s:%s", s.Tag, name(s.Now), name(s.Then), s.Action))
		}
		return strings.Join(parts, " ")
	}
	for _, tc := range []struct {
		name      string
		at        time.Time
		keepNewer bool
		want      string
	}{
		{"at 10:10", base.Add(10 * time.Minute), false,
			"found:g>f:set gone:->e:set later:c>-:delete moved:b>a:set offline:o>-:unknown quiet:q>q:keep raced:y>y:keep same:s>s:keep"},
		{"at 10:10, keeping newer tags", base.Add(10 * time.Minute), true,
			"found:g>f:set gone:->e:set later:c>-:keep moved:b>a:set offline:o>-:unknown quiet:q>q:keep raced:y>y:keep same:s>s:keep"},
		{"now: nothing to do", base.Add(time.Hour), false,
			"found:g>g:keep gone:->-:keep later:c>c:keep moved:b>b:keep offline:o>o:keep quiet:q>q:keep raced:y>y:keep same:s>s:keep"},
		{"before every recorded move", base.Add(-200 * time.Minute), false,
			"found:g>-:unknown gone:->-:keep later:c>-:delete moved:b>-:delete offline:o>-:unknown quiet:q>q:keep raced:y>-:delete same:s>-:delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := show(planTimeRestore(history, now, tc.at, tc.keepNewer)); got != tc.want {
				t.Fatalf("plan\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
