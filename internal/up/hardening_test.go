package up_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// TestKeyRotationAcrossRegions: each region signs with a key of its own
// and no setting any region holds (or would send a peer) carries a
// private key; `keys rotate` through westeurope gives both regions a new
// signing key within seconds, and tokens issued before and after it work
// in both regions.
func TestKeyRotationAcrossRegions(t *testing.T) {
	dir := t.TempDir()
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions()[:2], Auth: true})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	pass, err := up.LoadAdminPassword(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin := basic("admin", pass)
	keys := func() []auth.KeyInfo {
		_, _, out := call(t, http.DefaultClient, http.MethodGet, east+"/_georeg/v1/keys", admin, nil)
		var ks []auth.KeyInfo
		if err := json.Unmarshal(out, &ks); err != nil {
			t.Fatalf("keys: %v %s", err, out)
		}
		return ks
	}
	signing := func(ks []auth.KeyInfo) map[string]string {
		out := map[string]string{}
		for _, k := range ks {
			if k.State == "signing" {
				out[k.Region] = k.Kid
			}
		}
		return out
	}
	var before map[string]string
	eventually(t, 10*time.Second, func() error {
		if before = signing(keys()); len(before) != 2 {
			return fmt.Errorf("signing keys known in eastus: %v", before)
		}
		return nil
	})
	works := func(token string) {
		t.Helper()
		for _, base := range []string{east, west} {
			if code, _, out := call(t, http.DefaultClient, http.MethodGet, base+"/v2/_catalog", "Bearer "+token, nil); code != 200 {
				t.Fatalf("a token at %s: %d %s", base, code, out)
			}
		}
	}
	old := tokenFor(t, west, "admin", pass, "registry:catalog:*")
	works(old)
	callAs(t, admin)(http.MethodPost, west+"/_georeg/v1/keys/rotate", nil, 200)
	eventually(t, 15*time.Second, func() error {
		now := signing(keys())
		for region, kid := range before {
			if now[region] == "" || now[region] == kid {
				return fmt.Errorf("%s still signs with %s", region, kid)
			}
		}
		return nil
	})
	for _, k := range keys() {
		if k.State == "verifying" && (k.Retires == nil || k.Retires.Before(time.Now().Add(24*time.Hour))) {
			t.Fatalf("a replaced key retires at %v, before the refresh tokens it signed expire", k.Retires)
		}
	}
	works(old)
	works(tokenFor(t, east, "admin", pass, "registry:catalog:*"))
	for _, r := range reg.Regions {
		all, err := r.Node.Region.AllSettings(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range all {
			if strings.Contains(string(st.Value), "PRIVATE KEY") {
				t.Fatalf("%s holds setting %s/%s with a private key", r.Name, st.Kind, st.Name)
			}
		}
	}
}

// TestReadyzSaysWhyOnlyToOperators: with auth on, a region that is not
// ready answers 503 to anyone, and says why (which can name its paths)
// only to the front door's and regions' tokens.
func TestReadyzSaysWhyOnlyToOperators(t *testing.T) {
	dir := t.TempDir()
	// The filesystem stores, whatever GEOREG_TEST_REGION_STORES says: the
	// fault this test makes is a missing content directory.
	fs := func(string) (region.ContentConfig, region.MetadataConfig) {
		return region.ContentConfig{Driver: "fs"}, region.MetadataConfig{Driver: "sqlite"}
	}
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions()[:1], Auth: true, Stores: fs})
	east := reg.ByName["eastus"].URL
	content := filepath.Join(dir, "eastus", "content")
	if err := os.Rename(content, content+".away"); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(content+".away", content)
	get := func(authz string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, east+"/readyz", nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("")
	if code != http.StatusServiceUnavailable || strings.Contains(body, dir) || strings.Contains(body, "content store") {
		t.Fatalf("anonymous /readyz: %d %q", code, body)
	}
	keys, err := peerauth.ProbeOnly(peerauth.ProbeKey(reg.Secret))
	if err != nil {
		t.Fatal(err)
	}
	code, body = get("Bearer " + keys.ProbeToken(time.Now()))
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "content store") {
		t.Fatalf("the front door's /readyz: %d %q", code, body)
	}
}

// TestALaterRegionsPasswordFileResetsNothing: a region started later
// with another admin password file (a default setting, older than the
// registry's admin) takes the registry's admin password, in its region as
// everywhere; its own file's password works nowhere.
func TestALaterRegionsPasswordFileResetsNothing(t *testing.T) {
	dir := t.TempDir()
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions()[:2], Auth: true})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	first, err := up.LoadAdminPassword(dir)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // defaults order by the second they were proposed in
	other := filepath.Join(t.TempDir(), "admin-password")
	if err := os.WriteFile(other, []byte("another-password-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	brazil := startNode(t, "brazilsouth", func(c *config.Config) {
		c.Auth.Enabled, c.Auth.AdminPasswordFile = true, other
		c.Replication.Secret = reg.Secret
		c.Replication.Peers = []replicate.Peer{{Name: "eastus", Endpoint: east}}
	})
	login := func(base, pass string) int {
		code, _, _ := call(t, http.DefaultClient, http.MethodGet, base+"/_georeg/v1/users", basic("admin", pass), nil)
		return code
	}
	eventually(t, 30*time.Second, func() error {
		if code := login(brazil, first); code != 200 {
			return fmt.Errorf("the registry's admin password at brazilsouth: %d", code)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // brazilsouth's own default has had time to reach the others
	for _, base := range []string{east, west, brazil} {
		if code := login(base, first); code != 200 {
			t.Fatalf("the registry's admin password at %s: %d", base, code)
		}
		if code := login(base, "another-password-0123"); code != 401 {
			t.Fatalf("the later region's password file at %s: %d", base, code)
		}
	}
}
