package up_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/up"
)

// deletedIn lists what region base keeps restorable of repo.
func deletedIn(t *testing.T, base, repo string) []region.DeletedManifest {
	t.Helper()
	code, _, body := do(t, http.MethodGet, base+"/_georeg/v1/repository/deleted?name="+repo, "", nil)
	var ms []region.DeletedManifest
	if code != 200 || json.Unmarshal(body, &ms) != nil {
		t.Fatalf("list-deleted in %s: %d %s", base, code, body)
	}
	return ms
}

// collect runs garbage collection in region base now.
func collect(t *testing.T, base string) region.GCReport {
	t.Helper()
	code, _, body := do(t, http.MethodPost, base+"/_georeg/v1/gc", "", nil)
	var rep region.GCReport
	if code != 200 || json.Unmarshal(body, &rep) != nil {
		t.Fatalf("gc in %s: %d %s", base, code, body)
	}
	return rep
}

// TestADeleteIsRestorableFromAnotherRegionWhileSoftDeleteIsOn: soft
// delete enabled in eastus; an image pushed there and deleted by digest in
// westeurope is gone (404) everywhere, listed as restorable in
// southeastasia with the tag it had, the region that deleted it and its
// purge date, and keeps its blobs through garbage collection in every
// region (a grace of 1 ms: without soft delete they would go). Restored in
// southeastasia, it is pullable everywhere, every byte verified, and no
// longer listed. A restore onto a tag moved since is refused without
// --force and moves it back with it. Disabled, the policy keeps nothing
// and the next collection drops what was kept, blobs included.
func TestADeleteIsRestorableFromAnotherRegionWhileSoftDeleteIsOn(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), GCGrace: time.Millisecond})
	east, west, asia := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL, reg.ByName["southeastasia"].URL
	all := []string{east, west, asia}
	setPolicy := func(body string) {
		t.Helper()
		if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/policies/soft-delete", "application/json", []byte(body)); code != 200 {
			t.Fatalf("soft-delete policy %s: %d %s", body, code, out)
		}
		var want region.SoftDelete
		_ = json.Unmarshal([]byte(body), &want)
		for _, base := range all {
			eventually(t, 30*time.Second, func() error {
				_, _, out := do(t, http.MethodGet, base+"/_georeg/v1/policies/soft-delete", "", nil)
				var got region.SoftDelete
				if json.Unmarshal(out, &got) != nil || got != want {
					return fmt.Errorf("%s has policy %s", base, out)
				}
				return nil
			})
		}
	}
	setPolicy(`{"status":"enabled","days":7}`)

	img := push(t, east, "soft/app", "v1", "soft", 50_000)
	for _, base := range all {
		tagArrives(t, base, "soft/app", "v1", img.manifest)
	}
	if code, _, out := do(t, http.MethodDelete, west+"/v2/soft/app/manifests/"+img.manifest.String(), "", nil); code != 202 {
		t.Fatalf("delete in westeurope: %d %s", code, out)
	}
	for _, base := range all {
		eventually(t, 30*time.Second, func() error {
			if code, _, _ := do(t, http.MethodGet, base+"/v2/soft/app/manifests/"+img.manifest.String(), "", nil); code != 404 {
				return fmt.Errorf("%s serves the deleted manifest: %d", base, code)
			}
			if len(deletedIn(t, base, "soft/app")) != 1 {
				return fmt.Errorf("%s does not list it restorable yet", base)
			}
			return nil
		})
	}
	got := deletedIn(t, asia, "soft/app")[0]
	if got.Digest != img.manifest || strings.Join(got.Tags, ",") != "v1" || got.DeletedIn != "westeurope" || got.Region != "southeastasia" ||
		!got.RestorableUntil.Equal(got.DeletedAt.Add(7*24*time.Hour)) || time.Since(got.DeletedAt) > time.Minute {
		t.Fatalf("listed in southeastasia: %+v", got)
	}
	// usage counts it held: its blobs, each once.
	_, _, uout := do(t, http.MethodGet, asia+"/_georeg/v1/usage?local=true", "", nil)
	var u mgmtapi.UsageReport
	if err := json.Unmarshal(uout, &u); err != nil || len(u.Regions) != 1 || u.Regions[0].RestorableManifests != 1 || u.Regions[0].HeldBytes != int64(len(`{"seed":"soft"}`))+50_000 {
		t.Fatalf("usage of southeastasia: %v %s, want 1 restorable manifest holding 50,015 bytes", err, uout)
	}
	// Who deleted it is known where the delete was made.
	if by := deletedIn(t, west, "soft/app")[0].DeletedBy; by != "anonymous" || got.DeletedBy != "" {
		t.Fatalf("deleted by %q in westeurope (want anonymous: auth is off), %q in southeastasia (want none)", by, got.DeletedBy)
	}
	// image status says so, by digest and by the tag it had.
	for _, ref := range []string{img.manifest.String(), "v1"} {
		_, _, out := do(t, http.MethodGet, asia+"/_georeg/v1/images/status?repository=soft/app&reference="+ref+"&local=true", "", nil)
		var st mgmtapi.ImageStatus
		if err := json.Unmarshal(out, &st); err != nil || !st.Deleted || st.RestorableUntil == nil || !st.RestorableUntil.Equal(got.RestorableUntil) {
			t.Fatalf("status of %s in southeastasia: %v %s, want deleted, restorable until %s", ref, err, out, got.RestorableUntil)
		}
	}
	// Collected everywhere, a grace of 1 ms: the restorable manifest keeps
	// its blobs.
	for _, base := range all {
		collect(t, base)
		for _, b := range img.blobs {
			if code, _ := asPeerWith(t, reg.Secret, http.MethodGet, base+"/v2/soft/app/blobs/"+b.String()); code != 200 {
				t.Fatalf("%s collected blob %s of a restorable manifest: %d", base, b, code)
			}
		}
	}

	// Restored in southeastasia: pullable everywhere, no longer listed.
	restore := func(base, body string) (int, []byte) {
		code, _, out := do(t, http.MethodPost, base+"/_georeg/v1/repository/restore?name=soft/app", "application/json", []byte(body))
		return code, out
	}
	if code, out := restore(asia, fmt.Sprintf(`{"digest":%q}`, img.manifest)); code != 200 {
		t.Fatalf("restore in southeastasia: %d %s", code, out)
	}
	for _, base := range all {
		tagArrives(t, base, "soft/app", "v1", img.manifest)
		eventually(t, 30*time.Second, func() error { return holdsImage(t, reg, base, "soft/app", "v1", img) })
		if err := pullable(t, base, "soft/app", "v1", img); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() error {
			if n := len(deletedIn(t, base, "soft/app")); n != 0 {
				return fmt.Errorf("%s still lists %d restorable", base, n)
			}
			return nil
		})
	}

	// Deleted again, and v1 pushed anew in eastus: a restore in westeurope
	// onto the moved tag needs force.
	if code, _, out := do(t, http.MethodDelete, east+"/v2/soft/app/manifests/"+img.manifest.String(), "", nil); code != 202 {
		t.Fatalf("delete again: %d %s", code, out)
	}
	img2 := push(t, east, "soft/app", "v1", "soft-two", 20_000)
	eventually(t, 30*time.Second, func() error {
		if len(deletedIn(t, west, "soft/app")) != 1 {
			return fmt.Errorf("westeurope does not list the delete")
		}
		return nil
	})
	tagArrives(t, west, "soft/app", "v1", img2.manifest)
	if code, out := restore(west, fmt.Sprintf(`{"digest":%q}`, img.manifest)); code != http.StatusConflict || !strings.Contains(string(out), "--force") {
		t.Fatalf("restore onto a moved tag without force: %d %s, want 409 naming --force", code, out)
	}
	if code, out := restore(west, fmt.Sprintf(`{"digest":%q,"force":true}`, img.manifest)); code != 200 {
		t.Fatalf("restore with force: %d %s", code, out)
	}
	for _, base := range all {
		tagArrives(t, base, "soft/app", "v1", img.manifest)
	}
	// Bad input changes nothing.
	never := digest.FromString("never pushed")
	for _, bad := range []struct {
		body string
		code int
	}{
		{fmt.Sprintf(`{"digest":%q}`, never), 404}, {`{"digest":"sha256:short"}`, 400}, {`{"digets":"x"}`, 400},
		{fmt.Sprintf(`{"digest":%q,"tag":"no tag!"}`, img.manifest), 400},
	} {
		if code, out := restore(west, bad.body); code != bad.code {
			t.Fatalf("restore %s: %d %s, want %d", bad.body, code, out, bad.code)
		}
	}
	for _, bad := range []string{`{"status":"on","days":7}`, `{"status":"enabled","days":0}`, `{"status":"enabled","days":91}`} {
		if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/policies/soft-delete", "application/json", []byte(bad)); code != 400 {
			t.Fatalf("policy %s: %d %s, want 400", bad, code, out)
		}
	}

	// Disabled: what was kept goes at the next collection, blobs with it,
	// and a delete now keeps nothing.
	if code, _, out := do(t, http.MethodDelete, east+"/v2/soft/app/manifests/"+img2.manifest.String(), "", nil); code != 202 {
		t.Fatalf("delete img2: %d %s", code, out)
	}
	eventually(t, 30*time.Second, func() error {
		if n := len(deletedIn(t, asia, "soft/app")); n != 1 {
			return fmt.Errorf("southeastasia lists %d restorable, want img2", n)
		}
		return nil
	})
	setPolicy(`{"status":"disabled","days":7}`)
	if ms := deletedIn(t, asia, "soft/app"); len(ms) != 0 {
		t.Fatalf("listed with the policy disabled: %+v", ms)
	}
	if code, out := restore(asia, fmt.Sprintf(`{"digest":%q}`, img2.manifest)); code != http.StatusMethodNotAllowed {
		t.Fatalf("restore with the policy disabled: %d %s, want 405", code, out)
	}
	if rep := collect(t, asia); rep.ManifestsPurged != 1 {
		t.Fatalf("collection with the policy disabled purged %d, want 1: %+v", rep.ManifestsPurged, rep)
	}
	if code, _ := asPeerWith(t, reg.Secret, http.MethodGet, asia+"/v2/soft/app/blobs/"+img2.blobs[1].String()); code != 404 {
		t.Fatalf("southeastasia keeps the purged manifest's layer: %d", code)
	}
	if err := pullable(t, asia, "soft/app", "v1", img); err != nil {
		t.Fatalf("the restored image after the purge: %v", err)
	}
}

// TestARepositoryRestoredToATimeConvergesInEveryRegion: with soft delete
// on, 50 moves of five tags, made in turn in the three regions, then a
// tag made and another deleted. Every region records the same history,
// and what it says the tags were at a time T is what they were. A dry
// run changes nothing; the restore, asked of westeurope, sets every tag
// back to T (the later tag deleted, the deleted one back) in every
// region.
func TestARepositoryRestoredToATimeConvergesInEveryRegion(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()})
	east, west, asia := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL, reg.ByName["southeastasia"].URL
	all := []string{east, west, asia}
	if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/policies/soft-delete", "application/json", []byte(`{"status":"enabled","days":7}`)); code != 200 {
		t.Fatalf("policy: %d %s", code, out)
	}
	for _, base := range all {
		eventually(t, 30*time.Second, func() error {
			_, _, out := do(t, http.MethodGet, base+"/_georeg/v1/policies/soft-delete", "", nil)
			if !strings.Contains(string(out), `"enabled"`) {
				return fmt.Errorf("%s: %s", base, out)
			}
			return nil
		})
	}
	var manifests [][]byte
	for i := range 5 {
		img := push(t, east, "pit/app", "", fmt.Sprintf("pit-%d", i), 1000+i)
		_, _, m := do(t, http.MethodGet, east+"/v2/pit/app/manifests/"+img.manifest.String(), "", nil)
		manifests = append(manifests, m)
		for _, base := range all {
			eventually(t, 30*time.Second, func() error {
				if code, _, _ := do(t, http.MethodHead, base+"/v2/pit/app/manifests/"+img.manifest.String(), "", nil); code != 200 {
					return fmt.Errorf("%s lacks image %d", base, i)
				}
				return nil
			})
		}
	}
	move := func(i int) {
		base, tag, m := all[i%3], fmt.Sprintf("t%d", i%5), manifests[(i*7+i/5)%5]
		if code, _, out := do(t, http.MethodPut, base+"/v2/pit/app/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", m); code != 201 {
			t.Fatalf("move %d: %d %s", i, code, out)
		}
	}
	converged := func() map[string]string {
		t.Helper()
		var state map[string]string
		eventually(t, 30*time.Second, func() error {
			state = tagState(t, east, "pit/app")
			for _, base := range all[1:] {
				if got := tagState(t, base, "pit/app"); fmt.Sprint(got) != fmt.Sprint(state) {
					return fmt.Errorf("%s has %v, eastus %v", base, got, state)
				}
			}
			return nil
		})
		return state
	}
	for i := range 25 {
		move(i)
	}
	atT := converged()
	time.Sleep(5 * time.Millisecond) // T is after every move so far, by the wall clock
	at := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	for i := 25; i < 50; i++ {
		move(i)
	}
	if code, _, out := do(t, http.MethodPut, asia+"/v2/pit/app/manifests/late", "application/vnd.oci.image.manifest.v1+json", manifests[0]); code != 201 {
		t.Fatalf("late tag: %d %s", code, out)
	}
	if code, _, out := do(t, http.MethodDelete, west+"/v2/pit/app/manifests/t0", "", nil); code != 202 {
		t.Fatalf("delete t0: %d %s", code, out)
	}
	after := converged()
	if fmt.Sprint(after) == fmt.Sprint(atT) {
		t.Fatal("the moves after T changed nothing: the test checks nothing")
	}

	// Every region recorded the same moves: the 50, the late tag, the
	// delete.
	history := func(base string) []region.TagHistoryEntry {
		_, _, out := do(t, http.MethodGet, base+"/_georeg/v1/repository/tag-history?name=pit/app", "", nil)
		var h []region.TagHistoryEntry
		if err := json.Unmarshal(out, &h); err != nil {
			t.Fatalf("history of %s: %v %s", base, err, out)
		}
		return h
	}
	key := func(h []region.TagHistoryEntry) string {
		var parts []string
		for _, m := range h {
			parts = append(parts, fmt.Sprintf("%s=%s/%v@%s", m.Tag, m.Digest, m.Deleted, m.Of))
		}
		return strings.Join(parts, " ")
	}
	var want string
	eventually(t, 30*time.Second, func() error {
		h := history(east)
		if len(h) < 52 {
			return fmt.Errorf("eastus recorded %d moves, want at least 52", len(h))
		}
		want = key(h)
		for _, base := range all[1:] {
			if got := key(history(base)); got != want {
				return fmt.Errorf("%s recorded another history", base)
			}
		}
		return nil
	})
	// What the history says the tags were at T is what they were.
	fromHistory := map[string]string{}
	for _, m := range history(west) {
		if !m.At.After(at) {
			if m.Deleted {
				delete(fromHistory, m.Tag)
			} else {
				fromHistory[m.Tag] = m.Digest.String()
			}
		}
	}
	if fmt.Sprint(fromHistory) != fmt.Sprint(atT) {
		t.Fatalf("the history says the tags were %v at T, they were %v", fromHistory, atT)
	}

	body := func(dry bool) []byte {
		return []byte(fmt.Sprintf(`{"time":%q,"dryRun":%v}`, at.Format(time.RFC3339Nano), dry))
	}
	code, _, out := do(t, http.MethodPost, west+"/_georeg/v1/repository/restore-time?name=pit/app", "application/json", body(true))
	var plan region.TimeRestore
	if code != 200 || json.Unmarshal(out, &plan) != nil || !plan.DryRun {
		t.Fatalf("dry run: %d %s", code, out)
	}
	actions := map[string]string{}
	for _, s := range plan.Plan {
		actions[s.Tag] = s.Action
	}
	if actions["late"] != "delete" || actions["t0"] != "set" {
		t.Fatalf("plan %+v: want late deleted, t0 set", plan.Plan)
	}
	if got := tagState(t, west, "pit/app"); fmt.Sprint(got) != fmt.Sprint(after) {
		t.Fatalf("the dry run changed the tags: %v", got)
	}
	if code, _, out := do(t, http.MethodPost, west+"/_georeg/v1/repository/restore-time?name=pit/app", "application/json", body(false)); code != 200 {
		t.Fatalf("restore: %d %s", code, out)
	}
	if got := converged(); fmt.Sprint(got) != fmt.Sprint(atT) {
		t.Fatalf("restored to %v, want %v", got, atT)
	}
	for _, bad := range []string{`{"time":"yesterday"}`, `{}`, fmt.Sprintf(`{"time":%q}`, time.Now().Add(-30*24*time.Hour).Format(time.RFC3339))} {
		if code, _, out := do(t, http.MethodPost, west+"/_georeg/v1/repository/restore-time?name=pit/app", "application/json", []byte(bad)); code != 400 {
			t.Fatalf("restore %s: %d %s, want 400", bad, code, out)
		}
	}
}

// TestAPurgeAskedOfOneRegionDropsWhatEveryRegionKept: soft delete on, an
// image deleted in eastus is listed in every region; purged in
// westeurope, it is listed nowhere and not restorable anywhere, and the
// next collection in southeastasia frees its layer. The restore before it
// and the purge are in the audit log of the region that did them and
// reach a webhook subscribed to restore and purge: the restore from the
// region it was asked of, a purge from every region that dropped it.
func TestAPurgeAskedOfOneRegionDropsWhatEveryRegionKept(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), GCGrace: time.Millisecond, Webhooks: fastWebhooks})
	east, west, asia := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL, reg.ByName["southeastasia"].URL
	all := []string{east, west, asia}
	rc := startReceiver(t, reg, nil)
	createWebhook(t, reg, east, "softhook", mgmtapi.WebhookBody{URI: ptr(receiverURL(rc)), Actions: []string{"restore", "purge"}}, rc)
	if code, _, out := do(t, http.MethodPut, east+"/_georeg/v1/policies/soft-delete", "application/json", []byte(`{"status":"enabled","days":7}`)); code != 200 {
		t.Fatalf("policy: %d %s", code, out)
	}
	img := push(t, east, "purge/app", "v1", "purge", 30_000)
	for _, base := range all {
		tagArrives(t, base, "purge/app", "v1", img.manifest)
		eventually(t, 30*time.Second, func() error {
			_, _, out := do(t, http.MethodGet, base+"/_georeg/v1/policies/soft-delete", "", nil)
			if !strings.Contains(string(out), `"enabled"`) {
				return fmt.Errorf("%s: %s", base, out)
			}
			return nil
		})
	}
	deleteAndWait := func() {
		t.Helper()
		if code, _, out := do(t, http.MethodDelete, east+"/v2/purge/app/manifests/"+img.manifest.String(), "", nil); code != 202 {
			t.Fatalf("delete: %d %s", code, out)
		}
		for _, base := range all {
			eventually(t, 30*time.Second, func() error {
				if n := len(deletedIn(t, base, "purge/app")); n != 1 {
					return fmt.Errorf("%s lists %d restorable", base, n)
				}
				return nil
			})
		}
	}
	deleteAndWait()
	if code, _, out := do(t, http.MethodPost, asia+"/_georeg/v1/repository/restore?name=purge/app", "application/json", []byte(fmt.Sprintf(`{"digest":%q}`, img.manifest))); code != 200 {
		t.Fatalf("restore: %d %s", code, out)
	}
	for _, base := range all {
		tagArrives(t, base, "purge/app", "v1", img.manifest)
	}
	deleteAndWait()
	code, _, out := do(t, http.MethodDelete, west+"/_georeg/v1/repository/deleted?name=purge/app&digest="+img.manifest.String(), "", nil)
	var p region.Purge
	if code != 200 || json.Unmarshal(out, &p) != nil || p.Digest != img.manifest.String() {
		t.Fatalf("purge in westeurope: %d %s", code, out)
	}
	for _, base := range all {
		eventually(t, 30*time.Second, func() error {
			if n := len(deletedIn(t, base, "purge/app")); n != 0 {
				return fmt.Errorf("%s still lists %d restorable", base, n)
			}
			return nil
		})
		if code, _, out := do(t, http.MethodPost, base+"/_georeg/v1/repository/restore?name=purge/app", "application/json", []byte(fmt.Sprintf(`{"digest":%q}`, img.manifest))); code != 404 {
			t.Fatalf("restore after the purge in %s: %d %s, want 404", base, code, out)
		}
	}
	collect(t, asia)
	if code, _ := asPeerWith(t, reg.Secret, http.MethodGet, asia+"/v2/purge/app/blobs/"+img.blobs[1].String()); code != 404 {
		t.Fatalf("southeastasia keeps the purged manifest's layer: %d", code)
	}
	if code, _, out := do(t, http.MethodDelete, west+"/_georeg/v1/repository/deleted?name=purge/app&digest="+img.manifest.String(), "", nil); code != 404 {
		t.Fatalf("a purge again: %d %s, want 404", code, out)
	}

	eventually(t, 30*time.Second, func() error {
		if n := rc.count("restore", "southeastasia"); n != 1 {
			return fmt.Errorf("restore events from southeastasia: %d, want 1", n)
		}
		for _, r := range []string{"eastus", "westeurope", "southeastasia"} {
			if n := rc.count("purge", r); n != 1 {
				return fmt.Errorf("purge events from %s: %d, want 1", r, n)
			}
		}
		return nil
	})
	for _, ev := range rc.events() {
		if !ev.signed || ev.event.Target.Digest != img.manifest.String() || ev.event.Target.Repository != "purge/app" {
			t.Fatalf("event %+v (signed %v)", ev.event, ev.signed)
		}
	}
	for region, action := range map[string]string{asia: "restore", west: "purge"} {
		_, _, out := do(t, http.MethodGet, region+"/_georeg/v1/audit?since=1h&n=1000&local=true", "", nil)
		var log mgmtapi.AuditLog
		if err := json.Unmarshal(out, &log); err != nil {
			t.Fatalf("audit: %v %s", err, out)
		}
		found := false
		for _, e := range log.Entries {
			found = found || (e.Action == action && e.Repo == "purge/app" && e.Digest == img.manifest.String())
		}
		if !found {
			t.Fatalf("no %s entry in the audit log of %s: %s", action, region, out)
		}
	}
}

// TestARepositoryDeleteIsRestorableAndRestoresHonourLocks: with soft
// delete on, `repository delete` keeps each of its manifests restorable
// (with its tags) in every region; a write-disabled repository refuses a
// restore (DENIED naming the lock) and changes nothing; unlocked, the
// restore goes through.
func TestARepositoryDeleteIsRestorableAndRestoresHonourLocks(t *testing.T) {
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	softDeleteOn(t, reg, east)
	a := push(t, east, "whole/app", "a", "whole-a", 3000)
	b := push(t, east, "whole/app", "b", "whole-b", 3000)
	for _, r := range reg.Regions {
		tagArrives(t, r.URL, "whole/app", "b", b.manifest)
		tagArrives(t, r.URL, "whole/app", "a", a.manifest)
	}
	if code, _, out := do(t, http.MethodDelete, east+"/_georeg/v1/repository?name=whole/app", "", nil); code != 200 && code != 202 {
		t.Fatalf("repository delete: %d %s", code, out)
	}
	for _, r := range reg.Regions {
		eventually(t, 30*time.Second, func() error {
			got := map[string]string{}
			for _, m := range deletedIn(t, r.URL, "whole/app") {
				got[m.Digest.String()] = strings.Join(m.Tags, ",")
			}
			if got[a.manifest.String()] != "a" || got[b.manifest.String()] != "b" {
				return fmt.Errorf("%s keeps %v", r.Name, got)
			}
			return nil
		})
	}
	lock := func(write bool) {
		t.Helper()
		body := fmt.Sprintf(`{"writeEnabled":%v}`, write)
		if code, _, out := do(t, http.MethodPatch, east+"/_georeg/v1/repository?name=whole/app", "application/json", []byte(body)); code != 200 {
			t.Fatalf("lock %s: %d %s", body, code, out)
		}
		eventually(t, 30*time.Second, func() error {
			_, _, out := do(t, http.MethodGet, west+"/_georeg/v1/repository?name=whole/app", "", nil)
			var v mgmtapi.RepositoryView
			if err := json.Unmarshal(out, &v); err != nil || v.Attributes.WriteEnabled != write {
				return fmt.Errorf("westeurope: %v %s", err, out)
			}
			return nil
		})
	}
	lock(false)
	restore := fmt.Sprintf(`{"digest":%q}`, a.manifest)
	code, _, out := do(t, http.MethodPost, west+"/_georeg/v1/repository/restore?name=whole/app", "application/json", []byte(restore))
	if code != 403 || !strings.Contains(string(out), "DENIED") || !strings.Contains(string(out), "write-enabled") {
		t.Fatalf("restore into a write-disabled repository: %d %s, want 403 DENIED naming the lock", code, out)
	}
	if len(deletedIn(t, west, "whole/app")) != 2 {
		t.Fatal("the refused restore changed what westeurope keeps")
	}
	lock(true)
	if code, _, out := do(t, http.MethodPost, west+"/_georeg/v1/repository/restore?name=whole/app", "application/json", []byte(restore)); code != 200 {
		t.Fatalf("restore once unlocked: %d %s", code, out)
	}
	for _, r := range reg.Regions {
		tagArrives(t, r.URL, "whole/app", "a", a.manifest)
		eventually(t, 30*time.Second, func() error { return pullable(t, r.URL, "whole/app", "a", a) })
	}
}
