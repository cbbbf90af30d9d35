package up_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/cache"
	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/up"
)

// TestAPullWhoseFetcherRegionHangsIsFetchedWhereItMissed: the region the
// registry leaves an image's upstream fetch to (cache.Fetcher) is hung as
// eastus sees it (its link accepts connections and answers nothing). A
// cold pull in eastus is not left waiting on it: eastus's question of
// its status times out (5 s) beside the fetch request, and eastus fetches
// the image itself; the pull gets the upstream's image within a bound.
// With the fetcher healthy again, a second image is fetched by it and
// read through from it by digest.
func TestAPullWhoseFetcherRegionHangsIsFetchedWhereItMissed(t *testing.T) {
	upstream := startUpstream(t, "", "")
	regions := []string{"eastus", "westeurope", "southeastasia"}
	// Two images whose fetcher is not eastus.
	var repos []string
	for i := 0; len(repos) < 2 && i < 100; i++ {
		if f := cache.Fetcher(regions, fmt.Sprintf("hub/app%d|v1", i)); f != "eastus" {
			repos = append(repos, fmt.Sprintf("app%d", i))
		}
	}
	if len(repos) < 2 {
		t.Fatal("no image name whose fetcher is not eastus")
	}
	fetcher := cache.Fetcher(regions, "hub/"+repos[0]+"|v1")
	hung := upstream.put(t, "library/"+repos[0], "v1", 2)
	later := upstream.put(t, "library/"+repos[1], "v1", 2)

	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), Distance: up.Links(link.Shape{})})
	east := reg.ByName["eastus"]
	putCacheRule(t, reg, east.URL, "library", `{"source":"http://`+upstream.addr+`/library/*","target":"hub/*"}`)

	reg.Link("eastus", fetcher).Set(link.BlackHole)
	start := time.Now()
	code, body := getManifest(t, east.URL+"/v2/hub/"+repos[0]+"/manifests/v1")
	took := time.Since(start)
	if code != 200 || digest.FromBytes(body) != hung {
		t.Fatalf("a cold pull with its fetcher %s hung: %d %s", fetcher, code, body[:min(len(body), 300)])
	}
	t.Logf("the cold pull with its fetcher hung took %s", took)
	if took > 90*time.Second { // a bound (the peer timeouts), not a speed
		t.Fatalf("the pull waited %s on a hung fetcher region", took)
	}
	// Counted when the fetch stored the image, which the pull (served as
	// it streamed) does not wait for.
	for i := 0; i < 300 && metric(t, east.URL, "georeg_cache_pulls_total", map[string]string{"rule": "library", "outcome": "fetched"}) != 1; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if n := metric(t, east.URL, "georeg_cache_pulls_total", map[string]string{"rule": "library", "outcome": "fetched"}); n != 1 {
		for _, r := range reg.Regions {
			_, _, m := do(t, "GET", r.URL+"/metrics", "", nil)
			for _, l := range strings.Split(string(m), "\n") {
				if strings.HasPrefix(l, "georeg_cache_pulls_total") {
					t.Log(r.Name, l)
				}
			}
		}
		t.Fatalf("eastus counted %v fetches from the upstream, want 1 (fetched itself) (took %s)", n, took)
	}

	reg.Link("eastus", fetcher).Set(link.Healthy)
	code, body = getManifest(t, east.URL+"/v2/hub/"+repos[1]+"/manifests/v1")
	if code != 200 || digest.FromBytes(body) != later {
		t.Fatalf("a cold pull with its fetcher healthy: %d %s", code, body[:min(len(body), 300)])
	}
	if n := metric(t, east.URL, "georeg_cache_pulls_total", map[string]string{"rule": "library", "outcome": "peer"}); n != 1 {
		t.Fatalf("eastus counted %v pulls fetched by another region, want 1", n)
	}
	fetcher1 := reg.ByName[cache.Fetcher(regions, "hub/"+repos[1]+"|v1")].URL
	for i := 0; i < 300 && metric(t, fetcher1, "georeg_cache_pulls_total", map[string]string{"rule": "library", "outcome": "fetched"}) != 1; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if n := metric(t, fetcher1, "georeg_cache_pulls_total", map[string]string{"rule": "library", "outcome": "fetched"}); n != 1 {
		t.Fatalf("the fetcher of %s counted %v fetches from the upstream, want 1", repos[1], n)
	}
}

// getManifest GETs a manifest the way docker does (the upstream's images
// are Docker schema 2), with a client bound of two minutes.
func getManifest(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}
