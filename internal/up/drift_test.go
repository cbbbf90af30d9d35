package up_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/replicate"
)

// TestAPeerServingFarFutureVersionsCannotTakeOverSettings: a member that
// holds the secret (compromised, or its clock gone wild) serves settings
// stamped 2^63-1 and an hour ahead. The region refuses them (its status
// names the drift), stores none, keeps its clock near real time, and goes
// on serving pushes; a setting the peer serves with a sane version is
// applied.
func TestAPeerServingFarFutureVersionsCannotTakeOverSettings(t *testing.T) {
	const secret = "drift-secret"
	now := time.Now()
	settings := []replicate.SettingState{
		{Kind: replicate.ReplicaKind, Name: "forever", Value: json.RawMessage(`{"endpoint":"http://127.0.0.1:9"}`), Version: fmt.Sprintf("%d@mallory", int64(math.MaxInt64))},
		{Kind: replicate.ReplicaKind, Name: "later", Value: json.RawMessage(`{"endpoint":"http://127.0.0.1:9"}`), Version: hlc.Version{Time: now.Add(time.Hour).UnixMilli() << 16, Region: "mallory"}.String()},
		{Kind: replicate.ReplicaKind, Name: "sane", Value: json.RawMessage(`{"endpoint":"http://127.0.0.1:9"}`), Version: hlc.Version{Time: now.UnixMilli() << 16, Region: "mallory"}.String()},
	}
	mux := http.NewServeMux()
	mux.Handle(peerauth.IdentityPath, peerauth.NewVerifier(peerauth.FromSecret(secret), "mallory", slog.New(slog.DiscardHandler)).IdentityHandler())
	mux.HandleFunc(replicate.SettingsStatePath, func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"settings": settings})
	})
	mux.HandleFunc(feed.Path, func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(feed.Page{Region: "mallory"})
	})
	mallory := httptest.NewServer(mux)
	t.Cleanup(mallory.Close)

	east := startNode(t, "eastus", func(c *config.Config) {
		c.Replication.Secret = secret
		c.Replication.Peers = []replicate.Peer{{Name: "mallory", Endpoint: mallory.URL}}
	})
	eventually(t, 30*time.Second, func() error {
		for _, p := range regionStatus(t, east).Peers {
			if p.Peer == "mallory" && strings.Contains(p.LastError, "too far in the future") {
				return nil
			}
		}
		return fmt.Errorf("eastus's status does not name the drift: %+v", regionStatus(t, east).Peers)
	})
	_, _, out := do(t, "GET", east+"/_georeg/v1/replications", "", nil)
	if strings.Contains(string(out), `"forever"`) || strings.Contains(string(out), `"later"`) || !strings.Contains(string(out), `"sane"`) {
		t.Fatalf("eastus's regions: %s", out)
	}
	push(t, east, "drift/app", "v1", "drift", 10_000)
	// The push's versions are near real time: read eastus's feed as mallory.
	req, _ := http.NewRequest(http.MethodGet, east+feed.Path+"?since=0", nil)
	req.Header.Set("Authorization", "Bearer "+peerauth.FromSecret(secret).Token("mallory", "eastus", time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, err := feed.ParsePage(resp.Body, 0)
	if err != nil || len(page.Records) == 0 {
		t.Fatalf("eastus's feed: %v %+v", err, page)
	}
	for _, rec := range page.Records {
		v, err := hlc.ParseVersion(rec.Version)
		if err != nil || v.Wall().After(time.Now().Add(time.Minute)) {
			t.Fatalf("record %s %s has version %s (%v): the clock was pushed ahead", rec.Kind, rec.Repo, rec.Version, err)
		}
	}
}
