package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/auth"
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
