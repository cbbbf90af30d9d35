package cache

import (
	"slices"
	"testing"
)

// TestUpstreamBasesNameEachRegistryOnceAsClientsAddressIt: one base per
// upstream registry whatever the number of rules, https unless the rule
// says http:// or the host is one clients may reach without TLS, Docker Hub as go-containerregistry addresses it.
func TestUpstreamBasesNameEachRegistryOnceAsClientsAddressIt(t *testing.T) {
	got := upstreamBases(map[string]Rule{
		"a": {Source: "docker.io/library/*"},
		"b": {Source: "docker.io/bitnami/redis"},
		"c": {Source: "ghcr.io/org/*"},
		"d": {Source: "http://127.0.0.1:5000/library/*"},
		"e": {Source: "http://127.0.0.1:5000/other"},
		"f": {Source: "not a source"},
		"g": {Source: "localhost:5001/library/*"},
	})
	want := []string{"http://127.0.0.1:5000", "http://localhost:5001", "https://ghcr.io", "https://index.docker.io"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
