package region_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/region"
)

// step is one replicated change, as the feed would apply it.
type step struct {
	name  string
	apply func(ctx context.Context, r *region.Region) error
}

// permutations returns every order of steps.
func permutations(steps []step) [][]step {
	if len(steps) <= 1 {
		return [][]step{steps}
	}
	var out [][]step
	for i := range steps {
		rest := append(append([]step{}, steps[:i]...), steps[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]step{steps[i]}, p...))
		}
	}
	return out
}

// manifestFor stores a config and layer in repo and returns a manifest
// referencing them.
func manifestFor(t *testing.T, r *region.Region, repo, seed string) []byte {
	t.Helper()
	cfg, layer := []byte(`{"seed":"`+seed+`"}`), []byte("layer "+seed)
	for _, b := range [][]byte{cfg, layer} {
		if _, err := r.PutBlob(t.Context(), repo, digest.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer)))
}

// TestInvariant3ApplyIsIdempotentAndOrderFree applies one set of changes
// from three regions in all 120 orders, each change twice, to fresh
// regions: every order ends in the same state. Manifests arrive first
// (the apply order puts blobs, then manifests, before tags).
func TestInvariant3ApplyIsIdempotentAndOrderFree(t *testing.T) {
	const repo = "order/app"
	v := func(tm int64, region string) hlc.Version { return hlc.Version{Time: tm, Region: region} }
	var want string
	setup := func(t *testing.T) (*region.Region, digest.Digest, digest.Digest) {
		r := open(t, t.TempDir(), 0)
		t.Cleanup(func() { r.Close() })
		m1, m2 := manifestFor(t, r, repo, "one"), manifestFor(t, r, repo, "two")
		d1, d2 := digest.FromBytes(m1), digest.FromBytes(m2)
		for _, m := range [][]byte{m1, m2} {
			if err := r.ApplyManifest(t.Context(), "", 0, repo, digest.FromBytes(m), "application/vnd.oci.image.manifest.v1+json", m, v(5, "westeurope"), ""); err != nil {
				t.Fatal(err)
			}
		}
		return r, d1, d2
	}
	steps := func(d1, d2 digest.Digest) []step {
		return []step{
			{"tag -> one @10 westeurope", func(ctx context.Context, r *region.Region) error {
				return r.ApplyTag(ctx, "", 0, repo, "latest", d1, v(10, "westeurope"), true)
			}},
			{"tag delete @20 southeastasia", func(ctx context.Context, r *region.Region) error {
				return r.ApplyTagDelete(ctx, "", 0, repo, "latest", v(20, "southeastasia"))
			}},
			{"tag -> one @25 eastus", func(ctx context.Context, r *region.Region) error {
				return r.ApplyTag(ctx, "", 0, repo, "latest", d1, v(25, "eastus"), true)
			}},
			{"tag -> two @30 westeurope", func(ctx context.Context, r *region.Region) error {
				return r.ApplyTag(ctx, "", 0, repo, "latest", d2, v(30, "westeurope"), true)
			}},
			{"manifest one deleted @40 eastus", func(ctx context.Context, r *region.Region) error {
				return r.ApplyManifestDelete(ctx, "", 0, repo, d1, v(40, "eastus"))
			}},
		}
	}
	state := func(t *testing.T, r *region.Region, d1, d2 digest.Digest) string {
		ctx := t.Context()
		tags, err := r.Tags(ctx, repo, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		resolved, _ := r.ResolveTag(ctx, repo, "latest")
		one, _ := r.HasManifest(ctx, repo, d1)
		two, _ := r.HasManifest(ctx, repo, d2)
		sum, err := r.Summaries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("tags=%v latest=%s one=%t two=%t summary=%s", tags, resolved, one, two, sum[repo])
	}
	_, d1, d2 := setup(t)
	// On the shared stores each order costs a fresh PostgreSQL database
	// and S3 bucket: every sixth of the 120 orders (20, order 0 among
	// them) covers that dialect; the default stores run them all.
	every := 1
	if os.Getenv("GEOREG_TEST_REGION_STORES") == "shared" {
		every = 6
	}
	for i, order := range permutations(steps(d1, d2)) {
		if i%every != 0 {
			continue
		}
		r, _, _ := setup(t)
		for _, s := range append(order, order...) { // each change twice
			if err := s.apply(t.Context(), r); err != nil {
				t.Fatalf("order %d, %s: %v", i, s.name, err)
			}
		}
		got := state(t, r, d1, d2)
		if i == 0 {
			want = got
			if !strings.HasPrefix(got, fmt.Sprintf("tags=[latest] latest=%s one=false two=true ", d2)) {
				t.Fatalf("order 0 ends in %s; want latest -> two, one deleted", got)
			}
			continue
		}
		if got != want {
			var names []string
			for _, s := range order {
				names = append(names, s.name)
			}
			t.Fatalf("order %v ends in\n  %s\nwant\n  %s", names, got, want)
		}
	}
}
