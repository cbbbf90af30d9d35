package feed

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func FuzzParsePage(f *testing.F) {
	f.Add(`{"region":"eastus","head":2,"records":[{"seq":1,"kind":"blob","repo":"a","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","version":"5@eastus","created":"2026-01-01T00:00:00Z"},{"seq":2,"kind":"tag_delete","repo":"a","tag":"v1","version":"6@eastus","created":"2026-01-01T00:00:00Z"}]}`, int64(0))
	f.Add(`{"region":"x","head":0,"records":[]}`, int64(0))
	f.Add(`{"region":"x","head":1,"records":[{"seq":1,"kind":"setting","repo":"","tag":"brazilsouth","mediaType":"replica","version":"9@x","created":"2026-01-01T00:00:00Z","data":"eyJhIjoxfQ=="}]}`, int64(0))
	f.Add(`{"records":[{"seq":1,"kind":"nope"}]}`, int64(0))
	f.Fuzz(func(t *testing.T, body string, since int64) {
		p, err := ParsePage(strings.NewReader(body), since)
		if err != nil {
			return
		}
		last := since
		for _, r := range p.Records {
			if r.Validate() != nil || r.Seq <= last {
				t.Fatalf("accepted %+v after %d", r, last)
			}
			last = r.Seq
		}
	})
}

// TestPeerCredentialsNameTheirRegion: each region has its own credential
// derived from the replication secret; the secret itself, another secret's
// credential or a credential with its region changed is refused.
func TestPeerCredentialsNameTheirRegion(t *testing.T) {
	req := func(token string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "/_georeg/v1/feed", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return r
	}
	cred := Credential("s3cr3t", "westeurope")
	if region, ok := Peer(req(cred), "s3cr3t"); !ok || region != "westeurope" {
		t.Fatalf("own credential: %q %v", region, ok)
	}
	forged := strings.Replace(cred, "westeurope", "eastus", 1)
	for name, token := range map[string]string{"the secret": "s3cr3t", "another secret's": Credential("other", "westeurope"),
		"a forged region": forged, "empty": "", "prefix only": peerPrefix} {
		if _, ok := Peer(req(token), "s3cr3t"); ok {
			t.Errorf("%s credential is accepted", name)
		}
	}
	if _, ok := Peer(req(cred), ""); ok {
		t.Error("a region without a secret accepts peers")
	}
}

// TestTheFrontDoorCredentialOnlyProbes: the front door's credential reads
// health and status (Probe) but is no region's (Authorized), and names
// that are not region names (a derived key's purpose) are no credential.
func TestTheFrontDoorCredentialOnlyProbes(t *testing.T) {
	req := func(token string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "/_georeg/v1/status", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return r
	}
	door := req(Credential("s3cr3t", FrontDoor))
	if !Probe(door, "s3cr3t") || Authorized(door, "s3cr3t") {
		t.Fatalf("front door: probe %v, authorized %v; want true, false", Probe(door, "s3cr3t"), Authorized(door, "s3cr3t"))
	}
	region := req(Credential("s3cr3t", "eastus"))
	if !Probe(region, "s3cr3t") || !Authorized(region, "s3cr3t") {
		t.Fatal("a region's credential does not probe or replicate")
	}
	if Probe(req(Credential("s3cr3t", "data.eastus")), "s3cr3t") {
		t.Fatal("a credential for a name no region can have is accepted")
	}
	if k := Key("s3cr3t", "data-endpoint:eastus"); strings.Contains(Credential("s3cr3t", "eastus"), fmt.Sprintf("%x", k)) {
		t.Fatal("a derived key is a credential's MAC")
	}
}
