package up_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestAntiEntropyRestoresARecordRemovedFromAStore deletes a tag and its
// manifest from westeurope's database; anti-entropy brings them back.
func TestAntiEntropyRestoresARecordRemovedFromAStore(t *testing.T) {
	link := &faultyLink{}
	dir := t.TempDir()
	reg := startLinkedIn(t, dir, link, nil, 100*time.Millisecond)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	img := push(t, east, "ae/app", "v1", "antientropy", 5000)
	tagArrives(t, west, "ae/app", "v1", img.manifest)
	db := openStore(t, dir, "westeurope")
	exec(t, db, `DELETE FROM tags WHERE repo = 'ae/app'`)
	exec(t, db, `DELETE FROM manifests WHERE repo = 'ae/app'`)
	if got := tagState(t, west, "ae/app"); len(got) != 0 {
		t.Fatalf("damage did not take: %v", got)
	}
	eventually(t, 30*time.Second, func() error {
		if tagState(t, west, "ae/app")["v1"] != img.manifest.String() {
			return fmt.Errorf("westeurope not repaired")
		}
		return pullable(t, west, "ae/app", "v1", img)
	})
}

// TestAntiEntropyHealsATruncatedFeed: westeurope cannot reach eastus's
// feed while images are pushed there; eastus's feed is then truncated, so
// the feed alone can never deliver them. Anti-entropy does.
func TestAntiEntropyHealsATruncatedFeed(t *testing.T) {
	link := &faultyLink{}
	link.set(isFeed)
	dir := t.TempDir()
	reg := startLinkedIn(t, dir, link, []string{"westeurope", "southeastasia"}, 100*time.Millisecond)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	want := map[string]string{}
	for i := range 5 {
		tag := fmt.Sprintf("v%d", i)
		want[tag] = push(t, east, "trunc/app", tag, tag, 3000).manifest.String()
	}
	exec(t, openStore(t, dir, "eastus"), `DELETE FROM feed`)
	link.set(func(*http.Request) bool { return false })
	eventually(t, 30*time.Second, func() error {
		got := tagState(t, west, "trunc/app")
		if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(want)) {
			return fmt.Errorf("westeurope has %v", got)
		}
		return nil
	})
}

// TestAntiEntropyRestoresASettingRemovedFromAStore: a registry setting
// deleted from westeurope's database behind its back comes back.
func TestAntiEntropyRestoresASettingRemovedFromAStore(t *testing.T) {
	// westeurope reaches both peers through link, cut while its store is
	// damaged: a repair cannot come in before the test has seen the damage.
	link := &faultyLink{}
	dir := t.TempDir()
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions(), AntiEntropyInterval: 100 * time.Millisecond,
		Link: linkedFrom(t, link, "westeurope")})
	ctx := t.Context()
	east, west := reg.ByName["eastus"].Node.Region, reg.ByName["westeurope"].Node.Region
	if _, err := east.PutSetting(ctx, "replica", "brazilsouth", []byte(`{"endpoint":"http://127.0.0.1:5004"}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error { _, err := west.Setting(ctx, "replica", "brazilsouth"); return err })
	link.set(func(*http.Request) bool { return true })
	exec(t, openStore(t, dir, "westeurope"), `DELETE FROM settings`)
	if _, err := west.Setting(ctx, "replica", "brazilsouth"); err == nil {
		t.Fatal("damage did not take")
	}
	link.set(func(*http.Request) bool { return false })
	eventually(t, 30*time.Second, func() error { _, err := west.Setting(ctx, "replica", "brazilsouth"); return err })
}

// TestAntiEntropyFindsOneRemovedTagAmong20kAndRepairsOnlyIt: eastus and
// westeurope hold the same 20,000 tags; a round finds nothing to do. One
// tag is then deleted from westeurope's store by hand (no write through
// georeg, so no summary generation moves): westeurope's rounds against
// eastus find the one repository that differs once the rolling
// verification reaches it, and apply that one tag, nothing else.
func TestAntiEntropyFindsOneRemovedTagAmong20kAndRepairsOnlyIt(t *testing.T) {
	dir := t.TempDir()
	reg := startLinkedIn(t, dir, &faultyLink{}, nil, time.Hour) // rounds run here only
	ctx := t.Context()
	east, west := reg.ByName["eastus"], reg.ByName["westeurope"]
	img := push(t, east.URL, "big/app", "v0", "big", 3000)
	tagArrives(t, west.URL, "big/app", "v0", img.manifest)
	const n = 20_000
	for _, name := range []string{"eastus", "westeurope"} {
		db := openStore(t, dir, name)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if _, err := tx.ExecContext(ctx, `INSERT INTO tags (repo, name, digest, version, origin, updated_at, deleted)
				VALUES ('big/app', $1, $2, $3, 'eastus', 0, 0)`, fmt.Sprintf("t%05d", i), img.manifest.String(), int64(1)<<40); err != nil {
				t.Fatal(err)
			}
		}
		// Written as georeg writes: the repository's generation moves.
		if _, err := tx.ExecContext(ctx, `UPDATE repo_gens SET gen = gen + 1 WHERE repo = 'big/app'`); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	rep := west.Node.Replicator()
	eventually(t, 30*time.Second, func() error {
		round, err := rep.AntiEntropyRound(ctx, "eastus")
		if err != nil || len(round.Repos) != 0 || round.Applied != 0 {
			return fmt.Errorf("a round between equal regions: %+v, %v", round, err)
		}
		return nil
	})

	exec(t, openStore(t, dir, "westeurope"), `DELETE FROM tags WHERE repo = 'big/app' AND name = 't12345'`)
	var found replicate.Round
	for i := 0; len(found.Repos) == 0; i++ {
		if i == 40 { // 20,000 rows at the verification's 1,000 a refresh, two refreshes a round
			t.Fatal("40 rounds did not find the tag deleted by hand")
		}
		var err error
		if found, err = rep.AntiEntropyRound(ctx, "eastus"); err != nil {
			t.Fatal(err)
		}
	}
	if len(found.Repos) != 1 || found.Repos[0] != "big/app" || found.Applied != 1 {
		t.Fatalf("the round that found the deleted tag: %+v, want big/app alone differing and 1 tag applied", found)
	}
	if code, h, _ := do(t, "HEAD", west.URL+"/v2/big/app/manifests/t12345", "", nil); code != 200 || h.Get("Docker-Content-Digest") != img.manifest.String() {
		t.Fatalf("tag t12345 in westeurope: %d %q, want 200 %s", code, h.Get("Docker-Content-Digest"), img.manifest)
	}
	if round, err := rep.AntiEntropyRound(ctx, "eastus"); err != nil || len(round.Repos) != 0 {
		t.Fatalf("the round after the repair: %+v, %v; want nothing differing", round, err)
	}
}
