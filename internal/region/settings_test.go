package region_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// TestASettingWriteIsVersionedRecordedAndAudited: writing and deleting a
// setting each return a version, leave a feed record naming the setting
// (what replicates it) and an audit entry naming it, never its value.
func TestASettingWriteIsVersionedRecordedAndAudited(t *testing.T) {
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	settingRecords := func() int {
		t.Helper()
		recs, err := r.Feed(ctx, 0, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, rec := range recs {
			if rec.Kind == meta.KindSetting && rec.Tag == "teamone" && rec.MediaType == "scopemap" {
				n++
			}
		}
		return n
	}
	v1, err := r.PutSetting(ctx, "scopemap", "teamone", json.RawMessage(`{"actions":["repositories/app/content/read"]}`))
	if err != nil || v1.IsZero() {
		t.Fatalf("put: version %v, %v", v1, err)
	}
	if n := settingRecords(); n != 1 {
		t.Fatalf("%d feed records of the setting after a write; want 1", n)
	}
	v2, err := r.DeleteSetting(ctx, "scopemap", "teamone")
	if err != nil || !v1.Less(v2) {
		t.Fatalf("delete: version %v after %v, %v", v2, v1, err)
	}
	if n := settingRecords(); n != 2 {
		t.Fatalf("%d feed records of the setting after its delete; want 2", n)
	}
	entries, err := r.Audit(ctx, time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, outcome := range []string{"set", "deleted"} {
		if !slices.ContainsFunc(entries, func(e meta.AuditEntry) bool {
			return e.Action == region.AuditConfig && e.Reference == "scopemap/teamone" && e.Outcome == outcome
		}) {
			t.Fatalf("no audit entry of the setting's %s in %+v", outcome, entries)
		}
	}
	for _, e := range entries {
		if strings.Contains(e.Detail+e.Reference, "repositories/app") {
			t.Fatalf("the audit log holds a setting's value: %+v", e)
		}
	}
	if _, err := r.DeleteSetting(ctx, "scopemap", "teamone"); !ocierr.NameUnknown.Is(err) {
		t.Fatalf("deleting it again: %v; want NAME_UNKNOWN", err)
	}
}

// TestALockFromAPeerPinsItsTagHere: an image lock arriving from a peer
// sets its tag to the lock's digest whatever the tag holds here (a move
// made here before the lock arrived is undone), at once for a read the
// cache served before; a lock deleted by a peer pins nothing; a lock on
// another repository's tag never pins a manifest of this one, even one
// of the same digest, nor one of a repository whose name is as long as
// that lock's name.
func TestALockFromAPeerPinsItsTagHere(t *testing.T) {
	const repo = "pin/app"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	one := manifestFor(t, r, repo, "one")
	two := manifestFor(t, r, repo, "two")
	d1, d2 := digest.FromBytes(one), digest.FromBytes(two)
	for _, p := range []struct {
		tag string
		m   []byte
	}{{"v2", two}, {"v1", one}} {
		if _, err := r.PutManifest(ctx, repo, p.tag, ociManifest, p.m); err != nil {
			t.Fatal(err)
		}
	}
	resolves := func(tag string, want digest.Digest) {
		t.Helper()
		for range 2 { // the second read comes from the cache
			if got, err := r.ResolveTag(ctx, repo, tag); err != nil || got != want {
				t.Fatalf("%s resolves to %s (%v), want %s", tag, got, err, want)
			}
		}
	}
	resolves("v1", d1)
	lock := func(tag string, d digest.Digest) json.RawMessage {
		b, _ := json.Marshal(region.Lock{WriteEnabled: false, DeleteEnabled: true, Digest: d})
		return b
	}
	now := time.Now().UnixMilli() << 16
	if err := r.ApplySetting(ctx, "westeurope", 1, meta.Setting{Kind: region.LockKind, Name: region.LockName(repo, "v1"),
		Value: lock("v1", d2), Version: v(now, "westeurope")}); err != nil {
		t.Fatal(err)
	}
	resolves("v1", d2)
	if c, err := r.Cursor(ctx, "westeurope"); err != nil || c != 1 {
		t.Fatalf("westeurope's cursor %d (%v), want 1", c, err)
	}
	if _, err := r.PutManifest(ctx, repo, "v1", ociManifest, one); !ocierr.Denied.Is(err) {
		t.Fatalf("moving the pinned tag: %v, want DENIED", err)
	}
	// A peer's newer move of the pinned tag is refused here too, and its
	// record is done with: the peer's cursor moves past it.
	if err := r.ApplyTag(ctx, "eastus", 5, repo, "v1", d1, v(now+10, "eastus"), true); err != nil {
		t.Fatal(err)
	}
	resolves("v1", d2)
	if c, err := r.Cursor(ctx, "eastus"); err != nil || c != 5 {
		t.Fatalf("eastus's cursor %d (%v) after its move of a pinned tag, want 5", c, err)
	}

	// A lock's tombstone pins nothing; nor does a repository lock.
	resolves("v2", d2)
	if err := r.ApplySetting(ctx, "westeurope", 2, meta.Setting{Kind: region.LockKind, Name: region.LockName(repo, "v2"),
		Deleted: true, Version: v(now+1, "westeurope")}); err != nil {
		t.Fatal(err)
	}
	if err := r.ApplySetting(ctx, "westeurope", 3, meta.Setting{Kind: region.LockKind, Name: repo,
		Value: lock("", d1), Version: v(now+2, "westeurope")}); err != nil {
		t.Fatal(err)
	}
	resolves("v2", d2)
	if tags, err := r.TagList(ctx, repo); err != nil || len(tags) != 2 {
		t.Fatalf("tags after a lock tombstone and a repository lock: %+v %v", tags, err)
	}

	// Locks in other repositories on the same digest: d1, which no tag
	// of this repository holds any more, is deleted here.
	for _, other := range []string{"pin/b", "pin/app-two"} { // "pin/b:v" is as long as "pin/app"
		tag := map[string]string{"pin/b": "v", "pin/app-two": "v1"}[other]
		if _, err := r.PutManifest(ctx, other, tag, ociManifest, manifestFor(t, r, other, "one")); err != nil {
			t.Fatal(err)
		}
		if l, err := r.SetLock(ctx, other, tag, false, false); err != nil || l.Digest != d1 {
			t.Fatalf("lock %s:%s: %+v %v", other, tag, l, err)
		}
	}
	if err := r.DeleteManifest(ctx, repo, d1.String()); err != nil {
		t.Fatalf("deleting a manifest locked only in other repositories: %v", err)
	}
}

// TestALockWinsOverATagDeleteMadeBeforeItArrived: a peer's image lock
// made before this region deleted the tag (its version is older) still
// wins when it arrives: the tag is back at the pinned digest, as it is in
// the region that set the lock (where the delete, arriving, is refused),
// and the image cannot be deleted here.
func TestALockWinsOverATagDeleteMadeBeforeItArrived(t *testing.T) {
	const repo = "pin/old"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	m := manifestFor(t, r, repo, "one")
	d := digest.FromBytes(m)
	if _, err := r.PutManifest(ctx, repo, "v1", ociManifest, m); err != nil {
		t.Fatal(err)
	}
	before := r.Clock().Now()
	if err := r.DeleteManifest(ctx, repo, "v1"); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(region.Lock{WriteEnabled: true, DeleteEnabled: false, Digest: d})
	if err := r.ApplySetting(ctx, "westeurope", 1, meta.Setting{Kind: region.LockKind, Name: region.LockName(repo, "v1"),
		Value: b, Version: before}); err != nil {
		t.Fatal(err)
	}
	if got, err := r.ResolveTag(ctx, repo, "v1"); err != nil || got != d {
		t.Fatalf("v1 after the lock arrived: %s %v, want %s", got, err, d)
	}
	err := r.DeleteManifest(ctx, repo, d.String())
	if !ocierr.Denied.Is(err) || !strings.Contains(err.Error(), "--delete-enabled true") {
		t.Fatalf("deleting the image the lock pins: %v, want DENIED naming --delete-enabled true", err)
	}
}

// TestASettingARegionDerivesFromWhatItReadLosesToAChangeMadeMeanwhile: a
// region marks its own replica setting Ready from the value it read
// (PutSettingAfter); an admin's change of that setting made meanwhile in
// another region, after the value read but not yet applied here, must
// win over the mark everywhere (it is the later write), and a stale copy
// of the value read must not undo the mark.
func TestASettingARegionDerivesFromWhatItReadLosesToAChangeMadeMeanwhile(t *testing.T) {
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	const kind, name = "replica", "westeurope"
	value := func(s string) json.RawMessage { return json.RawMessage(s) }
	read, err := r.PutSetting(ctx, kind, name, value(`{"endpoint":"http://w","regionEndpointEnabled":true}`))
	if err != nil {
		t.Fatal(err)
	}
	// The admin's change in another region: after the value read (its
	// clock has seen it), a few milliseconds later.
	admins := meta.Setting{Kind: kind, Name: name, Value: value(`{"endpoint":"http://w","regionEndpointEnabled":false}`),
		Version: hlc.Version{Time: read.Time + 2, Region: "southeastasia"}}
	time.Sleep(5 * time.Millisecond) // this region's clock moves on meanwhile
	stored, err := r.PutSettingAfter(ctx, kind, name, value(`{"endpoint":"http://w","regionEndpointEnabled":true,"ready":true}`), read)
	if err != nil || !stored {
		t.Fatalf("the mark: stored %v, %v", stored, err)
	}
	holds := func(want string) {
		t.Helper()
		s, err := r.Setting(ctx, kind, name)
		if err != nil || string(s.Value) != want {
			t.Fatalf("the setting holds %s (%v), want %s", s.Value, err, want)
		}
	}
	stale := meta.Setting{Kind: kind, Name: name, Value: value(`{"endpoint":"http://w","regionEndpointEnabled":true}`), Version: read}
	if err := r.ApplySetting(ctx, "southeastasia", 1, stale); err != nil {
		t.Fatal(err)
	}
	holds(`{"endpoint":"http://w","regionEndpointEnabled":true,"ready":true}`)
	if err := r.ApplySetting(ctx, "southeastasia", 2, admins); err != nil {
		t.Fatal(err)
	}
	holds(string(admins.Value)) // the mark lost: the admin's change stands
	stored, err = r.PutSettingAfter(ctx, kind, name, value(`{"ready":true}`), read)
	if err != nil || stored {
		t.Fatalf("a mark derived from a value since replaced: stored %v, %v", stored, err)
	}
	holds(string(admins.Value))
}
