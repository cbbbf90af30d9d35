package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/up"
)

// TestACachedImageComesWithItsReferrers: the upstream (with the referrers
// API) holds an image and an SBOM whose subject is that image. The first
// pull of the image through the cache stores the SBOM too: the region's
// referrers API lists it, it pulls, and it reaches the other region with
// the image.
func TestACachedImageComesWithItsReferrers(t *testing.T) {
	upstream := startUpstream(t, "", "", registry.WithReferrersSupport(true))
	img := upstream.put(t, "library/app", "1.0", 1)
	// An SBOM: an artifact manifest whose subject is the image.
	sbom := []byte(`{"sbom":"of app 1.0"}`)
	if code, _, body := do(t, http.MethodPost, "http://"+upstream.addr+"/v2/library/app/blobs/uploads/?digest="+digest.FromBytes(sbom).String(), "", sbom); code != 201 && code != 202 {
		t.Fatalf("sbom blob: %d %s", code, body)
	}
	empty := []byte("{}")
	if code, _, body := do(t, http.MethodPost, "http://"+upstream.addr+"/v2/library/app/blobs/uploads/?digest="+digest.FromBytes(empty).String(), "", empty); code != 201 && code != 202 {
		t.Fatalf("empty config: %d %s", code, body)
	}
	_, _, mraw := do(t, http.MethodGet, "http://"+upstream.addr+"/v2/library/app/manifests/"+img.String(), "", nil)
	subject := fmt.Sprintf(`{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"%s","size":%d}`, img, len(mraw))
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/spdx+json",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},`+
		`"layers":[{"mediaType":"application/spdx+json","digest":"%s","size":%d}],"subject":%s}`,
		digest.FromBytes(empty), digest.FromBytes(sbom), len(sbom), subject))
	sd := digest.FromBytes(m)
	if code, _, body := do(t, http.MethodPut, "http://"+upstream.addr+"/v2/library/app/manifests/"+sd.String(), "application/vnd.oci.image.manifest.v1+json", m); code != 201 {
		t.Fatalf("sbom manifest: %d %s", code, body)
	}
	if code, _, body := do(t, http.MethodGet, "http://"+upstream.addr+"/v2/library/app/referrers/"+img.String(), "", nil); code != 200 || !strings.Contains(string(body), sd.String()) {
		t.Fatalf("the upstream does not list the sbom: %d %s", code, body)
	}

	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()[:2]})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/cache-rules/library", "application/json",
		[]byte(`{"source":"http://`+upstream.addr+`/library/*","target":"hub/*"}`)); code != 200 {
		t.Fatalf("cache rule: %d %s", code, out)
	}
	req, _ := http.NewRequest(http.MethodGet, east+"/v2/hub/app/manifests/1.0", nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != img.String() {
		t.Fatalf("cold pull: %d %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	for _, base := range []string{east, west} {
		eventually(t, 30*time.Second, func() error {
			code, _, body := do(t, http.MethodGet, base+"/v2/hub/app/referrers/"+img.String(), "", nil)
			var idx struct {
				Manifests []struct{ Digest digest.Digest }
			}
			if code != 200 || json.Unmarshal(body, &idx) != nil || len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sd {
				return fmt.Errorf("%s's referrers of the cached image: %d %s", base, code, body)
			}
			return nil
		})
		if code, _, body := do(t, http.MethodGet, base+"/v2/hub/app/manifests/"+sd.String(), "", nil); code != 200 || digest.FromBytes(body) != sd {
			t.Fatalf("the cached sbom in %s: %d", base, code)
		}
	}
}
