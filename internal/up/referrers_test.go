package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/georeg/georeg/internal/up"
)

// TestFiveThousandReferrersArePaged: a subject with 5,000 referrers (one
// in 20 with 100 KiB of annotations: 25 MB in all) is listed in pages of
// at most 1,000 descriptors and about 4 MiB, each with a Link to the next;
// following the Links yields every referrer once, in order, and a filter
// pages too.
func TestFiveThousandReferrersArePaged(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()[:1]})
	east := reg.ByName["eastus"]
	r := east.Node.Region
	ctx := t.Context()
	const repo = "refs/app"
	subject := push(t, east.URL, repo, "v1", "subject", 1000)
	cfg := []byte("{}")
	if _, err := r.PutBlob(ctx, repo, digest.FromBytes(cfg), int64(len(cfg)), strings.NewReader(string(cfg))); err != nil {
		t.Fatal(err)
	}
	const total = 5000
	big := strings.Repeat("a", 100<<10)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 8 {
				ann := fmt.Sprintf(`{"n":"%d"}`, i)
				if i%20 == 0 {
					ann = fmt.Sprintf(`{"n":"%d","big":"%s"}`, i, big)
				}
				typ := "application/vnd.example.sbom"
				if i%2 == 1 {
					typ = "application/vnd.example.signature"
				}
				m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"%s","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d},"annotations":%s}`,
					typ, digest.FromBytes(cfg), subject.manifest, 500, ann)
				if _, err := r.PutManifest(ctx, repo, digest.FromString(m).String(), "application/vnd.oci.image.manifest.v1+json", []byte(m)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d referrers stored in %s", total, time.Since(start).Round(time.Millisecond))

	link := regexp.MustCompile(`^<([^>]+)>; rel="next"$`)
	walk := func(first string) (n, pages, largest int) {
		next, prev := first, ""
		for pages = 0; next != "" && pages < 100; pages++ {
			resp, err := http.Get(east.URL + next)
			if err != nil {
				t.Fatal(err)
			}
			var idx v1.Index
			err = json.NewDecoder(resp.Body).Decode(&idx)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || len(idx.Manifests) == 0 || len(idx.Manifests) > 1000 {
				t.Fatalf("page %d (%s): %d, %d descriptors, %v", pages, next, resp.StatusCode, len(idx.Manifests), err)
			}
			if cl := int(resp.ContentLength); cl > largest {
				largest = cl
			}
			for _, m := range idx.Manifests {
				if m.Digest.String() <= prev {
					t.Fatalf("page %d: %s after %s", pages, m.Digest, prev)
				}
				prev = m.Digest.String()
				n++
			}
			next = ""
			if l := resp.Header.Get("Link"); l != "" {
				match := link.FindStringSubmatch(l)
				if match == nil {
					t.Fatalf("Link %q", l)
				}
				next = match[1]
			}
		}
		return n, pages, largest
	}
	n, pages, largest := walk("/v2/" + repo + "/referrers/" + subject.manifest.String())
	t.Logf("all: %d referrers in %d pages, the largest %d bytes", n, pages, largest)
	if n != total || pages < 6 || largest > 4<<20+200<<10 {
		t.Fatalf("%d referrers in %d pages (largest %d bytes), want %d in at least 6 of at most 4 MiB and a descriptor", n, pages, largest, total)
	}
	n, pages, _ = walk("/v2/" + repo + "/referrers/" + subject.manifest.String() + "?artifactType=application/vnd.example.signature&n=300")
	if n != total/2 || pages != 9 {
		t.Fatalf("signatures: %d in %d pages, want %d in 9", n, pages, total/2)
	}
}
