package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/up"
)

// TestManagementListingsArePaged: a repository with 2,500 tags is listed
// by the management API in pages of 1,000 with a Link to the rest; the CLI
// client follows the Links and gets every tag once, in order.
func TestManagementListingsArePaged(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()[:1]})
	east := reg.ByName["eastus"]
	img := push(t, east.URL, "many/app", "t0000", "many", 1000)
	m, err := east.Node.Region.GetManifest(t.Context(), "many/app", img.manifest.String())
	if err != nil {
		t.Fatal(err)
	}
	const total = 2500
	for i := 1; i < total; i++ {
		if _, err := east.Node.Region.PutManifest(t.Context(), "many/app", fmt.Sprintf("t%04d", i), m.MediaType, m.Payload); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Get(east.URL + "/_georeg/v1/repository/tags?name=many/app")
	if err != nil {
		t.Fatal(err)
	}
	var first []mgmtapi.TagView
	_ = json.NewDecoder(resp.Body).Decode(&first)
	resp.Body.Close()
	if len(first) != 1000 || !strings.Contains(resp.Header.Get("Link"), `skip=1000`) {
		t.Fatalf("the first page: %d tags, Link %q", len(first), resp.Header.Get("Link"))
	}
	var all []mgmtapi.TagView
	start := time.Now()
	if err := cli.New(east.URL, 30*time.Second).Do(t.Context(), http.MethodGet, "/_georeg/v1/repository/tags?name=many/app", nil, &all); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tags in %s", len(all), time.Since(start).Round(time.Millisecond))
	if len(all) != total {
		t.Fatalf("the client got %d tags, want %d", len(all), total)
	}
	for i, tag := range all {
		if want := fmt.Sprintf("t%04d", i); tag.Name != want {
			t.Fatalf("tag %d is %s, want %s", i, tag.Name, want)
		}
	}
}
