package up_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/up"
)

// TestTheLinksControlPutsFaultsOnTheRegistrysLinks drives the links
// control of `georeg up` (georeg link) as the CLI does: a partition of
// westeurope stops replication to it while the others go on, healing it
// lets the image arrive, and bad changes are refused changing nothing.
func TestTheLinksControlPutsFaultsOnTheRegistrysLinks(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), Distance: up.Links(link.Shape{}), AntiEntropyInterval: time.Hour})
	control := httptest.NewServer(reg.LinksHandler())
	defer control.Close()
	change := func(body string) (int, []byte) {
		resp, err := http.Post(control.URL+"/links", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	faults := func() map[[2]string]string {
		resp, err := http.Get(control.URL + "/links")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var links []up.LinkState
		if err := json.NewDecoder(resp.Body).Decode(&links); err != nil {
			t.Fatal(err)
		}
		out := map[[2]string]string{}
		for _, l := range links {
			out[[2]string{l.From, l.To}] = l.Fault
		}
		return out
	}
	if got := len(faults()); got != 6 {
		t.Fatalf("%d links listed, want 6 (both directions of three pairs)", got)
	}

	for _, bad := range []string{
		`{"region":"mars","fault":"partition"}`,
		`{"region":"westeurope","fault":"flaky"}`,
		`{"region":"westeurope","to":"westeurope","fault":"stall"}`,
		`{"region":"westeurope","fault":"stall","colour":"red"}`,
		`{"region":"westeurope","fault":"stall","bandwidthBytesPerSecond":-1}`,
		`not json`,
	} {
		if code, body := change(bad); code != 400 || !bytes.Contains(body, []byte("REQUEST_INVALID")) {
			t.Errorf("%s: %d %s, want 400 REQUEST_INVALID", bad, code, body)
		}
	}
	for pair, f := range faults() {
		if f != "healthy" {
			t.Fatalf("a refused change changed %v to %s", pair, f)
		}
	}

	if code, body := change(`{"region":"westeurope","fault":"partition"}`); code != 200 {
		t.Fatalf("partition westeurope: %d %s", code, body)
	}
	for pair, f := range faults() {
		cut := pair[0] == "westeurope" || pair[1] == "westeurope"
		if (f == "partition") != cut {
			t.Errorf("link %v is %s after partitioning westeurope", pair, f)
		}
	}
	east, west, asia := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL, reg.ByName["southeastasia"].URL
	img := push(t, east, "links/app", "v1", "links-v1", 100_000)
	eventually(t, 30*time.Second, func() error { return holdsImage(t, reg, asia, "links/app", "v1", img) })
	if err := holdsImage(t, reg, west, "links/app", "v1", img); err == nil {
		t.Fatal("westeurope holds an image pushed while its links were partitioned")
	}
	if code, body := change(`{"region":"westeurope","fault":"healthy"}`); code != 200 {
		t.Fatalf("heal westeurope: %d %s", code, body)
	}
	eventually(t, 60*time.Second, func() error { return holdsImage(t, reg, west, "links/app", "v1", img) })
}
