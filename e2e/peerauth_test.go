package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/peerauth"
)

// rogue is an HTTP server registered as a region that is none: it
// records every request and answers identity challenges with a made-up
// proof.
type rogue struct {
	addr string
	mu   sync.Mutex
	seen []string // "FROM PATH AUTHORIZATION" of each request
}

func startRogue(t *testing.T) *rogue {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rogue{addr: l.Addr().String()}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, fmt.Sprintf("%s %s %s", req.URL.Query().Get("from"), req.URL.Path, req.Header.Get("Authorization")))
		r.mu.Unlock()
		if req.URL.Path == peerauth.IdentityPath {
			_ = json.NewEncoder(w).Encode(peerauth.Identity{Region: "evil", Proof: strings.Repeat("0", 64)})
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return r
}

func (r *rogue) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// TestARogueReplicaEndpointReceivesNoCredential: a replica registered
// at an endpoint that is no region of the registry (what a stolen admin
// login or a reused hostname gives) is asked by every region to prove its
// name, and receives a nonce and nothing else: no request carries a
// credential, and its status says why.
func TestARogueReplicaEndpointReceivesNoCredential(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope")
	bad := startRogue(t)
	georeg(t, "replication", "create", "--registry", regions["eastus"].addr, "--name", "evil", "--endpoint", "http://"+bad.addr)
	// Both regions try: westeurope once the setting has replicated.
	waitFor(t, 30*time.Second, func() error {
		from := map[string]bool{}
		for _, s := range bad.requests() {
			from[strings.Fields(s)[0]] = true
		}
		if !from["eastus"] || !from["westeurope"] {
			return fmt.Errorf("identity asked by %v", from)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // three reconcile rounds more: retries would have sent a token by now
	for _, s := range bad.requests() {
		if f := strings.Fields(s); len(f) != 2 || f[1] != peerauth.IdentityPath {
			t.Fatalf("the rogue endpoint got %q", s)
		}
	}
	out := georeg(t, "replication", "show", "evil", "--registry", regions["westeurope"].addr, "-o", "json")
	if !strings.Contains(out, "did not prove its identity") {
		t.Fatalf("replication show evil does not say why it is not followed:\n%s", out)
	}
	t.Logf("the rogue endpoint received %d requests, each an identity challenge without a credential", len(bad.requests()))
}

// TestAStolenRegionTokenIsGoodAtOneRegionUntilItExpiresOrItsRegionIsDeleted:
// a region token taken off the wire works only at the region it was minted
// for, only while it has not expired, and only while its region is a
// member: deleting the region revokes it in every region.
func TestAStolenRegionTokenIsGoodAtOneRegionUntilItExpiresOrItsRegionIsDeleted(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope")
	east, west := regions["eastus"].addr, regions["westeurope"].addr
	// brazilsouth is registered (it need not run: only membership counts).
	georeg(t, "replication", "create", "--registry", east, "--name", "brazilsouth", "--endpoint", "http://"+freeAddr(t))
	keys := peerauth.FromSecret("e2e-secret") // what a stolen token was minted with
	feedAt := func(addr, token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+feed.Path+"?limit=1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	stolen := keys.Token("brazilsouth", "westeurope", time.Now())
	waitFor(t, 30*time.Second, func() error {
		if code := feedAt(west, stolen); code != http.StatusOK {
			return fmt.Errorf("brazilsouth's token at westeurope: %d", code)
		}
		return nil
	})
	if code := feedAt(east, stolen); code != http.StatusUnauthorized {
		t.Fatalf("brazilsouth's token for westeurope, at eastus: %d, want 401", code)
	}
	if code := feedAt(west, keys.Token("brazilsouth", "westeurope", time.Now().Add(-peerauth.TokenTTL-time.Second))); code != http.StatusUnauthorized {
		t.Fatalf("an expired token: %d, want 401", code)
	}
	georeg(t, "replication", "delete", "brazilsouth", "--registry", east)
	start := time.Now()
	waitFor(t, 30*time.Second, func() error {
		if code := feedAt(west, stolen); code != http.StatusUnauthorized {
			return fmt.Errorf("a deleted region's token at westeurope: %d", code)
		}
		return nil
	})
	t.Logf("revoked at westeurope %s after the delete in eastus", time.Since(start).Round(time.Millisecond))
	// Nor can the token holder register brazilsouth again.
	req, _ := http.NewRequest(http.MethodPut, "http://"+west+peerauth.JoinPath+"brazilsouth", strings.NewReader(`{"endpoint":"http://127.0.0.1:9"}`))
	req.Header.Set("Authorization", "Bearer "+keys.Token("brazilsouth", "westeurope", time.Now()))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a deleted region registering itself again: %d, want 403", resp.StatusCode)
	}
}
