package up_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/up"
)

// clientAt is a client of the region the front door gives source address
// ip (127.0.0.<i+1> is the i-th region's: up.Config.FrontDoor).
type clientAt struct {
	t    *testing.T
	door string
	http *http.Client
}

func newClientAt(t *testing.T, door, ip string) *clientAt {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &clientAt{t: t, door: door, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// do sends a request through the front door; it returns the status, the
// region that answered and the body.
func (c *clientAt) do(method, path, contentType string, body []byte) (int, string, []byte) {
	c.t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), method, c.door+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Georeg-Region"), data
}

// routedTo waits until the front door sends the client to its region.
func (c *clientAt) routedTo(region string) {
	c.t.Helper()
	eventually(c.t, 30*time.Second, func() error {
		if code, at, _ := c.do("GET", "/v2/", "", nil); code != 200 || at != region {
			return fmt.Errorf("the door sends the client to %q (%d), not %s", at, code, region)
		}
		return nil
	})
}

// blob pushes b to repo in one request.
func (c *clientAt) blob(repo string, b []byte) (int, string, []byte) {
	return c.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), "", b)
}

// imageManifest is an image manifest of config and one layer.
func imageManifest(cfg, layer []byte) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer)))
}

// image pushes an image of config and layer to repo:tag, every request
// expected to succeed.
func (c *clientAt) image(repo, tag string, cfg, layer []byte) []byte {
	c.t.Helper()
	for _, b := range [][]byte{cfg, layer} {
		if code, at, body := c.blob(repo, b); code != 201 {
			c.t.Fatalf("blob to %s: %d %s", at, code, body)
		}
	}
	m := imageManifest(cfg, layer)
	if code, at, body := c.do("PUT", "/v2/"+repo+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", m); code != 201 {
		c.t.Fatalf("manifest to %s: %d %s", at, code, body)
	}
	return m
}

// quotas waits until the client's region lists a quota of scope at limit
// (a setting made in another region arrives within seconds).
func (c *clientAt) quotaArrives(scope string, limit int64) {
	c.t.Helper()
	eventually(c.t, 30*time.Second, func() error {
		code, at, body := c.do("GET", "/_georeg/v1/policies/quotas", "", nil)
		var vs []region.QuotaView
		if code != 200 || json.Unmarshal(body, &vs) != nil {
			return fmt.Errorf("quotas at %s: %d %s", at, code, body)
		}
		for _, v := range vs {
			if v.Scope == scope && v.LimitBytes == limit {
				return nil
			}
		}
		return fmt.Errorf("%s lists %+v, not %s at %d", at, vs, scope, limit)
	})
}

// deniedBy checks a refusal is DENIED naming quota scope and region.
func deniedBy(t *testing.T, code int, body []byte, scope, regionName string) {
	t.Helper()
	var e struct {
		Errors []struct {
			Code    string            `json:"code"`
			Message string            `json:"message"`
			Detail  map[string]string `json:"detail"`
		} `json:"errors"`
	}
	if code != http.StatusForbidden || json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != "DENIED" ||
		e.Errors[0].Detail["quota"] != scope || e.Errors[0].Detail["region"] != regionName || !strings.Contains(e.Errors[0].Message, "quota exceeded") {
		t.Fatalf("want 403 DENIED by the quota of %s in %s, got %d %s", scope, regionName, code, body)
	}
}

// TestAQuotaRefusesThePushThatWouldCrossItInEveryRegion: clients of each
// region push through the front door, then at each region's endpoint. A repository quota set in
// westeurope lets eastus push an image under it; once that image has
// replicated, a second one that would cross the limit is refused in
// westeurope and in southeastasia (DENIED naming the quota and the
// region) and nothing of it is linked; pushing again what is there, and
// a small image that fits, are accepted; a manifest that would cross is
// refused like a blob. A registry quota refuses a push to any other
// repository that would cross it, accepts one that fits, and lifted in
// another region lets the refused one through.
func TestAQuotaRefusesThePushThatWouldCrossItInEveryRegion(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), FrontDoor: "127.0.0.1:0"})
	east := newClientAt(t, reg.FrontDoor, "127.0.0.1")
	west := newClientAt(t, reg.FrontDoor, "127.0.0.2")
	asia := newClientAt(t, reg.FrontDoor, "127.0.0.3")
	for _, c := range []struct {
		client *clientAt
		region string
	}{{east, "eastus"}, {west, "westeurope"}, {asia, "southeastasia"}} {
		c.client.routedTo(c.region)
	}
	if code, at, body := west.do("PUT", "/_georeg/v1/policies/quotas?scope=quota/app", "application/json", []byte(`{"limitBytes":150000}`)); code != 200 || at != "westeurope" {
		t.Fatalf("set the quota: %d at %q %s", code, at, body)
	}
	east.quotaArrives("quota/app", 150_000)

	cfgA, layerA := []byte(`{"image":"a"}`), bytes.Repeat([]byte("a"), 100_000)
	mA := east.image("quota/app", "a", cfgA, layerA)
	for _, r := range []string{"westeurope", "southeastasia"} {
		tagArrives(t, reg.ByName[r].URL, "quota/app", "a", digest.FromBytes(mA))
	}
	layerB := bytes.Repeat([]byte("b"), 100_000)
	for _, c := range []struct {
		client *clientAt
		region string
	}{{west, "westeurope"}, {asia, "southeastasia"}} {
		c.client.quotaArrives("quota/app", 150_000)
		code, at, body := c.client.blob("quota/app", layerB)
		// The client's region, or (a loaded machine) the door's fallback:
		// every region holds image A, so the push is refused there too.
		deniedBy(t, code, body, "quota/app", at)
		if code, _, _ := do(t, "HEAD", reg.ByName[at].URL+"/v2/quota/app/blobs/"+digest.FromBytes(layerB).String(), "", nil); code != 404 {
			t.Fatalf("%s links the refused blob: HEAD %d", at, code)
		}
	}
	// From here on, each step needs the region of the step before it:
	// the regions are asked at their own endpoints.
	west = &clientAt{t: t, door: reg.ByName["westeurope"].URL, http: http.DefaultClient}
	asia = &clientAt{t: t, door: reg.ByName["southeastasia"].URL, http: http.DefaultClient}
	east = &clientAt{t: t, door: reg.ByName["eastus"].URL, http: http.DefaultClient}
	// Again what is there adds nothing: accepted, even by tag.
	if code, _, body := west.blob("quota/app", layerA); code != 201 {
		t.Fatalf("layer A again: %d %s", code, body)
	}
	if code, _, body := west.do("PUT", "/v2/quota/app/manifests/again", "application/vnd.oci.image.manifest.v1+json", mA); code != 201 {
		t.Fatalf("manifest A again: %d %s", code, body)
	}
	// A small image fits.
	west.image("quota/app", "small", []byte(`{"image":"small"}`), bytes.Repeat([]byte("s"), 10_000))

	// A manifest that would cross is refused like a blob: its blobs fit
	// (10,030 of 10,100 bytes), the manifest does not.
	if code, _, body := west.do("PUT", "/_georeg/v1/policies/quotas?scope=quota/m", "application/json", []byte(`{"limitBytes":10100}`)); code != 200 {
		t.Fatalf("set the quota of quota/m: %d %s", code, body)
	}
	cfgM, layerM := []byte(`{"image":"m"}`), bytes.Repeat([]byte("m"), 10_000)
	for _, b := range [][]byte{cfgM, layerM} {
		if code, _, body := west.blob("quota/m", b); code != 201 {
			t.Fatalf("blob of quota/m: %d %s", code, body)
		}
	}
	code, _, body := west.do("PUT", "/v2/quota/m/manifests/v1", "application/vnd.oci.image.manifest.v1+json", imageManifest(cfgM, layerM))
	deniedBy(t, code, body, "quota/m", "westeurope")
	if code, _, _ := west.do("GET", "/v2/quota/m/manifests/v1", "", nil); code != 404 {
		t.Fatalf("the refused manifest is served: %d", code)
	}

	// The registry's quota: what every region stores once all the above
	// has replicated, and 20,000 bytes more. In southeastasia a
	// 30,000-byte layer to another repository crosses it; a
	// 10,000-byte one does not.
	var stored int64
	eventually(t, 30*time.Second, func() error {
		_, _, ub := asia.do("GET", "/_georeg/v1/usage", "", nil)
		var u mgmtapi.UsageReport
		if err := json.Unmarshal(ub, &u); err != nil || len(u.Regions) != 3 {
			return fmt.Errorf("usage: %v %s", err, ub)
		}
		stored = u.Regions[0].StoredBytes + u.Regions[0].ManifestBytes
		for _, r := range u.Regions {
			if r.StoredBytes+r.ManifestBytes != stored {
				return fmt.Errorf("not settled: %s stores %d, %s %d", r.Region, r.StoredBytes+r.ManifestBytes, u.Regions[0].Region, stored)
			}
		}
		return nil
	})
	limit := stored + 20_000
	if code, _, body := east.do("PUT", "/_georeg/v1/policies/quotas?scope=*", "application/json", []byte(fmt.Sprintf(`{"limitBytes":%d}`, limit))); code != 200 {
		t.Fatalf("set the registry's quota: %d %s", code, body)
	}
	asia.quotaArrives(region.RegistryScope, limit)
	big := bytes.Repeat([]byte("o"), 30_000)
	code, _, body = asia.blob("quota/other", big)
	deniedBy(t, code, body, region.RegistryScope, "southeastasia")
	if code, _, body := asia.blob("quota/other", bytes.Repeat([]byte("o"), 10_000)); code != 201 {
		t.Fatalf("a blob under the registry's quota: %d %s", code, body)
	}
	// Right after, one byte more than what is left: the node counts its
	// own pushes on top of its figure of the region's store.
	code, _, body = asia.blob("quota/other", bytes.Repeat([]byte("p"), 10_001))
	deniedBy(t, code, body, region.RegistryScope, "southeastasia")
	// Listed with what counts against each, in the region asked.
	_, _, qb := asia.do("GET", "/_georeg/v1/policies/quotas", "", nil)
	var vs []region.QuotaView
	if json.Unmarshal(qb, &vs) != nil || len(vs) != 3 {
		t.Fatalf("quotas: %s", qb)
	}
	for _, v := range vs {
		if v.Region != "southeastasia" || v.Scope == region.RegistryScope && v.UsedBytes != stored+10_000 {
			t.Fatalf("quota listed: %+v, want used %d", v, stored+10_000)
		}
	}
	// Lifted (in another region), the push goes through.
	if code, _, body := west.do("DELETE", "/_georeg/v1/policies/quotas?scope=*", "", nil); code != 200 {
		t.Fatalf("delete the registry's quota: %d %s", code, body)
	}
	eventually(t, 30*time.Second, func() error {
		if code, _, body := asia.blob("quota/other", big); code != 201 {
			return fmt.Errorf("after the quota was lifted: %d %s", code, body)
		}
		return nil
	})
	// Bad input changes nothing.
	for _, bad := range []struct{ scope, body string }{
		{"quota/app", `{"limitBytes":0}`}, {"quota/app", `{"limitBytes":-5}`}, {"quota/app", `{"limit":5}`},
		{"Bad..Name", `{"limitBytes":5}`}, {"", `{"limitBytes":5}`},
	} {
		if code, _, body := west.do("PUT", "/_georeg/v1/policies/quotas?scope="+bad.scope, "application/json", []byte(bad.body)); code != 400 {
			t.Fatalf("quota %q %s: %d %s, want 400", bad.scope, bad.body, code, body)
		}
	}
	west.quotaArrives("quota/app", 150_000)
}
