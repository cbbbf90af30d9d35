package up_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"testing"
	"time"
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
	link := &faultyLink{}
	dir := t.TempDir()
	reg := startLinkedIn(t, dir, link, nil, 100*time.Millisecond)
	ctx := t.Context()
	east, west := reg.ByName["eastus"].Node.Region, reg.ByName["westeurope"].Node.Region
	if _, err := east.PutSetting(ctx, "replica", "brazilsouth", []byte(`{"endpoint":"http://127.0.0.1:5004"}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error { _, err := west.Setting(ctx, "replica", "brazilsouth"); return err })
	exec(t, openStore(t, dir, "westeurope"), `DELETE FROM settings`)
	if _, err := west.Setting(ctx, "replica", "brazilsouth"); err == nil {
		t.Fatal("damage did not take")
	}
	eventually(t, 30*time.Second, func() error { _, err := west.Setting(ctx, "replica", "brazilsouth"); return err })
}
