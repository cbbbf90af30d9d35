package meta_test

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
)

// TestAPullRecordOnlyMovesForward: the last pull of a manifest is kept to
// the second, an earlier time noted later does not move it back, and a
// forgotten manifest has none.
func TestAPullRecordOnlyMovesForward(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		a, b := digest.FromString("a"), digest.FromString("b")
		t0 := time.Date(2026, 12, 4, 10, 17, 0, 0, time.UTC)
		note := func(repo string, d digest.Digest, at time.Time) {
			t.Helper()
			if err := db.Update(ctx, func(tx *meta.Tx) error { return tx.NotePulled(ctx, repo, d, at) }); err != nil {
				t.Fatal(err)
			}
		}
		note("hub/app", a, t0)
		note("hub/app", a, t0.Add(-5*time.Hour)) // an older node's batch arriving late
		note("hub/app", b, t0.Add(-48*time.Hour))
		note("hub/app", b, t0.Add(2*time.Hour))
		note("hub/other", a, t0.Add(-72*time.Hour))
		got, err := db.LastPulled(ctx, "hub/app")
		if err != nil {
			t.Fatal(err)
		}
		want := map[digest.Digest]time.Time{a: t0, b: t0.Add(2 * time.Hour)}
		if len(got) != 2 || !got[a].Equal(want[a]) || !got[b].Equal(want[b]) {
			t.Fatalf("last pulls %v, want %v", got, want)
		}
		if err := db.Update(ctx, func(tx *meta.Tx) error { return tx.ForgetPulled(ctx, "hub/app", a) }); err != nil {
			t.Fatal(err)
		}
		got, _ = db.LastPulled(ctx, "hub/app")
		if _, ok := got[a]; ok || len(got) != 1 {
			t.Fatalf("after forgetting a: %v", got)
		}
		other, _ := db.LastPulled(ctx, "hub/other")
		if len(other) != 1 {
			t.Fatalf("another repository's record: %v", other)
		}
	})
}
