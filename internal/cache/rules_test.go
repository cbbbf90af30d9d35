package cache

import (
	"fmt"
	"strings"
	"testing"
)

func TestMatched(t *testing.T) {
	rules := map[string]Rule{
		"hub-nginx":   {Source: "docker.io/library/nginx", Target: "hub/nginx"},
		"hub-library": {Source: "docker.io/library/*", Target: "hub/*", CredentialSet: "hub"},
		"hub-bitnami": {Source: "docker.io/bitnami/*", Target: "hub/bitnami/*"},
		"ghcr":        {Source: "ghcr.io/*", Target: "ghcr/*"},
		"aa-ghcr":     {Source: "ghcr.io/other/*", Target: "ghcr/*"},
	}
	for _, tc := range []struct {
		repo, rule, upstream string
	}{
		{"hub/nginx", "hub-nginx", "docker.io/library/nginx"},           // exact wins over the wildcard
		{"hub/alpine", "hub-library", "docker.io/library/alpine"},       // wildcard
		{"hub/bitnami/redis", "hub-bitnami", "docker.io/bitnami/redis"}, // the longest prefix
		{"hub/a/b/c", "hub-library", "docker.io/library/a/b/c"},         // deeper names keep their path
		{"ghcr/org/app", "aa-ghcr", "ghcr.io/other/org/app"},            // a tie: by rule name
		{"hub", "", ""},        // the prefix alone is no repository
		{"other/app", "", ""},  // no rule
		{"hubx/nginx", "", ""}, // a prefix is a path, not a string prefix
	} {
		m, ok := Matched(rules, tc.repo)
		if got := map[bool]string{true: m.Rule + " " + m.Upstream}[ok]; got != strings.TrimSpace(tc.rule+" "+tc.upstream) {
			t.Errorf("%s: got %q, want %q", tc.repo, got, tc.rule+" "+tc.upstream)
		}
	}
	if m, _ := Matched(rules, "hub/alpine"); m.Cred != "hub" {
		t.Errorf("the rule's credential set: %q", m.Cred)
	}
}

func TestRuleValidate(t *testing.T) {
	for _, tc := range []struct {
		r    Rule
		want string // "" valid
	}{
		{Rule{Source: "docker.io/library/nginx", Target: "hub/nginx"}, ""},
		{Rule{Source: "ghcr.io/org/*", Target: "ghcr/*"}, ""},
		{Rule{Source: "127.0.0.1:5000/up/*", Target: "local/*"}, ""},
		{Rule{Source: "library/nginx", Target: "hub/nginx"}, "give registry/repository"},
		{Rule{Source: "docker.io", Target: "hub/nginx"}, "give registry/repository"},
		{Rule{Source: "docker.io/library/*", Target: "hub/nginx"}, "both end in /*"},
		{Rule{Source: "docker.io/library/nginx", Target: "Hub/Nginx"}, "target"},
		{Rule{Source: "docker.io/Library/nginx", Target: "hub/nginx"}, "give registry/repository"},
		{Rule{Source: "docker.io/library/nginx", Target: "hub/nginx", Revalidate: "5m", EvictUntouched: "720h"}, ""},
		{Rule{Source: "docker.io/library/nginx", Target: "hub/nginx", Revalidate: "0.5s"}, "revalidate"},
		{Rule{Source: "docker.io/library/nginx", Target: "hub/nginx", EvictUntouched: "30d"}, "evictUntouched"},
		{Rule{Source: "docker.io/library/nginx", Target: "hub/nginx", EvictUntouched: "50000h"}, "evictUntouched"},
		{Rule{Source: "docker.io/library/nginx", Target: "hub/nginx", EvictUntouched: "-1h"}, "evictUntouched"},
	} {
		err := tc.r.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.r, err, tc.want)
		}
	}
}

func TestMirrored(t *testing.T) {
	rules := map[string]Rule{
		"hub":       {Source: "docker.io/library/*", Target: "hub/*"},
		"hub-nginx": {Source: "docker.io/library/nginx", Target: "web/nginx"},
		"mirror":    {Source: "docker.io/*", Target: "dockerhub/*"},
		"ghcr":      {Source: "ghcr.io/org/*", Target: "ghcr/org/*"},
		"inside":    {Source: "http://127.0.0.1:5030/library/*", Target: "local/*"},
	}
	for _, tc := range []struct{ ns, repo, want string }{
		{"docker.io", "library/nginx", "web/nginx"},              // exact first
		{"docker.io", "library/alpine", "hub/alpine"},            // the longest prefix
		{"registry-1.docker.io", "library/alpine", "hub/alpine"}, // Docker Hub by any of its names
		{"docker.io", "bitnami/redis", "dockerhub/bitnami/redis"},
		{"ghcr.io", "org/app", "ghcr/org/app"},
		{"127.0.0.1:5030", "library/app", "local/app"}, // an http:// source, by host and port
		{"ghcr.io", "other/app", ""},                   // no rule for it
		{"quay.io", "library/nginx", ""},               // another registry
	} {
		got, ok := Mirrored(rules, tc.ns, tc.repo)
		if !ok {
			got = ""
		}
		if got != tc.want {
			t.Errorf("ns=%s %s: got %q, want %q", tc.ns, tc.repo, got, tc.want)
		}
	}
}

func TestFetcher(t *testing.T) {
	regions := []string{"eastus", "westeurope", "southeastasia"}
	counts := map[string]int{}
	for i := range 300 {
		key := fmt.Sprintf("hub/app%d|v1", i)
		f := Fetcher(regions, key)
		// The same whatever the order the regions are listed in.
		if g := Fetcher([]string{regions[2], regions[0], regions[1]}, key); g != f {
			t.Fatalf("%s: %s or %s by the order of the list", key, f, g)
		}
		// A region leaving moves only the images it fetched.
		if f != "westeurope" {
			if g := Fetcher([]string{"eastus", "southeastasia"}, key); g != f {
				t.Fatalf("%s moved from %s to %s when westeurope left", key, f, g)
			}
		}
		counts[f]++
	}
	for _, r := range regions {
		if counts[r] < 50 {
			t.Fatalf("fetches spread %v: %s gets too few", counts, r)
		}
	}
	// Keys that differ only in their last characters spread too.
	clear(counts)
	for i := range 300 {
		counts[Fetcher(regions, fmt.Sprintf("hub/app|t%d", 950000+i))]++
	}
	for _, r := range regions {
		if counts[r] < 50 {
			t.Fatalf("tags of one repository spread %v: %s gets too few", counts, r)
		}
	}
	if Fetcher(nil, "x") != "" {
		t.Fatal("no region: no fetcher")
	}
}
