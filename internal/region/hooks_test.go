package region_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/webhook"
)

// hookAll configures a webhook that wants every image action, and
// returns a function listing what it was queued, oldest first, as
// "action tag digest".
func hookAll(t *testing.T, r *region.Region) func() []string {
	t.Helper()
	cfg := webhook.Config{URI: "http://127.0.0.1:9/hook", Status: webhook.StatusEnabled, Format: "acr",
		Actions: []string{webhook.ActionPush, webhook.ActionDelete, webhook.ActionReplicated}, Created: time.Now()}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutSetting(t.Context(), webhook.Kind, "hookall", b); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		t.Helper()
		ds, err := r.Deliveries(t.Context(), "hookall", 1000)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(ds, func(a, b meta.Delivery) int { return int(a.ID - b.ID) })
		var out []string
		for _, d := range ds {
			var ev webhook.Event
			if err := json.Unmarshal(d.Payload, &ev); err != nil {
				t.Fatal(err)
			}
			out = append(out, ev.Action+" "+ev.Target.Tag+" "+ev.Target.Digest)
		}
		return out
	}
}

// auditHas reports whether r's audit log holds an entry of action on
// repo's reference ref with outcome ok.
func auditHas(t *testing.T, r *region.Region, action, repo, ref string) bool {
	t.Helper()
	entries, err := r.Audit(t.Context(), time.Time{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(entries, func(e meta.AuditEntry) bool {
		return e.Action == action && e.Repo == repo && e.Reference == ref && e.Outcome == "ok"
	})
}

// TestEveryImageChangeReachesTheWebhooksAuditAndFeed: a push, a replicated
// manifest, a tag delete and a manifest delete each queue their event for
// a webhook that wants it, in order, and each delete leaves its audit
// entry and its feed records (a tag delete per tag the manifest delete
// removed, then the manifest delete), after which nothing it removed is
// served.
func TestEveryImageChangeReachesTheWebhooksAuditAndFeed(t *testing.T) {
	const repo = "hooks/app"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	events := hookAll(t, r)

	m1 := manifestFor(t, r, repo, "one")
	m2 := manifestFor(t, r, repo, "two")
	d1, d2 := digest.FromBytes(m1), digest.FromBytes(m2)
	for _, p := range []struct {
		tag string
		m   []byte
	}{{"v1", m1}, {"v2", m1}, {"v3", m2}} {
		if _, err := r.PutManifest(ctx, repo, p.tag, ociManifest, p.m); err != nil {
			t.Fatal(err)
		}
	}
	m3 := manifestFor(t, r, repo, "three")
	d3 := digest.FromBytes(m3)
	if err := r.ApplyManifest(ctx, "westeurope", 1, repo, d3, ociManifest, m3, v(time.Now().UnixMilli()<<16, "westeurope"), ""); err != nil {
		t.Fatal(err)
	}
	want := []string{"push v1 " + d1.String(), "push v2 " + d1.String(), "push v3 " + d2.String(), "replicated  " + d3.String()}
	if got := events(); !slices.Equal(got, want) {
		t.Fatalf("events queued after the pushes:\n%q\nwant\n%q", got, want)
	}

	// A tag delete.
	if err := r.DeleteManifest(ctx, repo, "v3"); err != nil {
		t.Fatal(err)
	}
	want = append(want, "delete v3 ")
	if got := events(); !slices.Equal(got, want) {
		t.Fatalf("events queued after deleting tag v3:\n%q\nwant\n%q", got, want)
	}
	if !auditHas(t, r, region.AuditDelete, repo, "v3") {
		t.Fatal("no audit entry of the tag delete")
	}
	if kinds := feedKinds(t, r, "", "v3"); !slices.Equal(kinds, []string{meta.KindManifest, meta.KindTag, meta.KindTagDelete}) {
		t.Fatalf("feed records of tag v3: %v", kinds)
	}
	if _, deleted, _ := r.Tombstone(ctx, repo, "v3"); !deleted {
		t.Fatal("no tombstone of the deleted tag")
	}
	if err := r.DeleteManifest(ctx, repo, "v3"); err == nil {
		t.Fatal("deleting a deleted tag again succeeded")
	}
	if got := events(); len(got) != len(want) {
		t.Fatalf("a refused tag delete queued an event: %q", got[len(want):])
	}

	// A manifest delete removes its two tags.
	if err := r.DeleteManifest(ctx, repo, d1.String()); err != nil {
		t.Fatal(err)
	}
	want = append(want, "delete  "+d1.String())
	if got := events(); !slices.Equal(got, want) {
		t.Fatalf("events queued after deleting %s:\n%q\nwant\n%q", d1, got, want)
	}
	if !auditHas(t, r, region.AuditDelete, repo, d1.String()) {
		t.Fatal("no audit entry of the manifest delete")
	}
	recs, err := r.Feed(ctx, 0, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	var last []string
	for _, rec := range recs[len(recs)-3:] {
		last = append(last, rec.Kind+" "+rec.Tag+" "+rec.Digest.String())
	}
	slices.Sort(last[:2]) // the tag deletes, in any order
	if wantLast := []string{meta.KindTagDelete + " v1 ", meta.KindTagDelete + " v2 ", meta.KindManifestDelete + "  " + d1.String()}; !slices.Equal(last, wantLast) {
		t.Fatalf("feed records of the manifest delete %q, want %q", last, wantLast)
	}
	for _, ref := range []string{"v1", "v2", d1.String()} {
		if _, err := r.GetManifest(ctx, repo, ref); err == nil {
			t.Fatalf("%s is served after its manifest was deleted", ref)
		}
	}
	if _, err := r.GetManifest(ctx, repo, d2.String()); err != nil {
		t.Fatalf("a manifest not deleted: %v", err)
	}
}

// TestARegionAloneIsEverywhereAtOnce: in a registry of one region, a push
// queues push and, at once, replicated-everywhere for a webhook that
// wants both.
func TestARegionAloneIsEverywhereAtOnce(t *testing.T) {
	const repo = "hooks/alone"
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	cfg := webhook.Config{URI: "http://127.0.0.1:9/hook", Status: webhook.StatusEnabled, Format: "acr",
		Actions: []string{webhook.ActionPush, webhook.ActionReplicatedEverywhere}, Created: time.Now()}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutSetting(ctx, webhook.Kind, "everywhere", b); err != nil {
		t.Fatal(err)
	}
	m := manifestFor(t, r, repo, "alone")
	if _, err := r.PutManifest(ctx, repo, "v1", ociManifest, m); err != nil {
		t.Fatal(err)
	}
	ds, err := r.Deliveries(ctx, "everywhere", 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, d := range ds {
		var ev webhook.Event
		if err := json.Unmarshal(d.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Target.Digest != digest.FromBytes(m).String() {
			t.Fatalf("an event of %s, want %s", ev.Target.Digest, digest.FromBytes(m))
		}
		actions = append(actions, ev.Action)
	}
	slices.Sort(actions)
	if want := []string{webhook.ActionPush, webhook.ActionReplicatedEverywhere}; !slices.Equal(actions, want) {
		t.Fatalf("events queued: %q, want %q", actions, want)
	}
}
