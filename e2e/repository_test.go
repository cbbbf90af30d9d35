package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/region"
)

// TestRepositoryCommands drives georeg repository, manifest list-metadata,
// config retention, gc and audit against one region.
func TestRepositoryCommands(t *testing.T) {
	s := startServer(t, t.TempDir())
	reg := "http://" + s.addr
	d1 := pushImage(t, s.addr, "team/app", "v1", "first")
	pushImage(t, s.addr, "team/app", "v2", "second")
	pushImage(t, s.addr, "other", "latest", "third")
	g := func(args ...string) string { return georeg(t, append(args, "--registry", reg)...) }

	if out := g("repository", "list"); !strings.Contains(out, "team/app") || !strings.Contains(out, "other") {
		t.Fatalf("list:\n%s", out)
	}
	if out := g("repository", "show-tags", "--name", "team/app", "--orderby", "time_desc"); strings.Index(out, "v2") > strings.Index(out, "v1") {
		t.Fatalf("show-tags newest first:\n%s", out)
	}
	var ms []mgmtapi.ManifestView
	if err := json.Unmarshal([]byte(g("manifest", "list-metadata", "--name", "team/app", "--output", "json")), &ms); err != nil || len(ms) != 2 {
		t.Fatalf("list-metadata: %v %+v", err, ms)
	}
	if out := g("repository", "show-manifests", "--name", "team/app"); !strings.Contains(out, d1.String()) {
		t.Fatalf("show-manifests:\n%s", out)
	}
	// The newer image is locked: a repository delete (which goes oldest
	// first) must refuse before it deletes the older one.
	g("repository", "update", "--name", "team/app", "--image", "v2", "--write-enabled", "false")
	if out := g("repository", "show-tags", "--name", "team/app"); !strings.Contains(out, "false") {
		t.Fatalf("the lock does not show:\n%s", out)
	}
	if code, _ := status(t, "DELETE", reg+"/v2/team/app/manifests/v2", nil, nil); code != 403 {
		t.Fatalf("delete of a locked tag: %d", code)
	}
	if out, err := runErr(t, georegBin, "repository", "delete", "--name", "team/app", "--registry", reg); err == nil || !strings.Contains(out, "locked") {
		t.Fatalf("repository delete over a lock: %v\n%s", err, out)
	}
	for _, tag := range []string{"v1", "v2"} {
		if code, _ := status(t, "HEAD", reg+"/v2/team/app/manifests/"+tag, nil, nil); code != 200 {
			t.Fatalf("a refused repository delete deleted %s: HEAD %d", tag, code)
		}
	}
	g("repository", "update", "--name", "team/app", "--image", "v2", "--write-enabled", "true")
	if out := g("repository", "delete", "--name", "team/app"); !strings.Contains(out, "2 manifests") {
		t.Fatalf("delete:\n%s", out)
	}
	// A repository with an index: its children go after it (a child of a
	// live index is not deleted), so the whole repository goes.
	index, _ := pushIndex(t, s.addr, "team/multi")
	if out := g("repository", "delete", "--name", "team/multi"); !strings.Contains(out, "4 manifests") {
		t.Fatalf("delete of a repository holding an index, its two children and a referrer:\n%s", out)
	}
	if code, _ := status(t, "HEAD", reg+"/v2/team/multi/manifests/"+index.String(), nil, nil); code != 404 {
		t.Fatalf("the index after its repository was deleted: HEAD %d", code)
	}
	var p region.Retention
	if err := json.Unmarshal([]byte(g("config", "retention", "update", "--status", "enabled", "--days", "3", "--output", "json")), &p); err != nil || p.Days != 3 || p.Status != "enabled" {
		t.Fatalf("retention update: %v %+v", err, p)
	}
	if out := g("config", "retention", "show"); !strings.Contains(out, "enabled") || !strings.Contains(out, "UntaggedManifests") {
		t.Fatalf("retention show:\n%s", out)
	}
	var rep region.GCReport
	if err := json.Unmarshal([]byte(g("gc", "run", "--dry-run", "--output", "json")), &rep); err != nil || !rep.DryRun || rep.Repositories < 2 {
		t.Fatalf("gc dry run: %v %+v", err, rep)
	}
	if out := g("gc", "show"); !strings.Contains(out, "true") {
		t.Fatalf("gc show:\n%s", out)
	}
	if out := g("audit", "list", "--since", "1h"); strings.Count(out, "push") < 3 || !strings.Contains(out, "delete") {
		t.Fatalf("audit list:\n%s", out)
	}
	if out, err := runErr(t, georegBin, "repository", "show", "--name", "Bad Name", "--registry", reg); err == nil || !strings.Contains(out, "NAME_INVALID") {
		t.Fatalf("a bad name: %v\n%s", err, out)
	}
}
