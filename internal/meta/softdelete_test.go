package meta_test

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// TestADeleteKeepsTheManifestRestorableOnlyWhileThePolicySaysSo, on both
// stores: with keeping on, a local delete and a peer's tombstone (after
// its tag deletes at the same version) each keep the payload and the
// tags; a tombstone older than the manifest keeps nothing; with keeping
// off nothing is kept; a push of the manifest again forgets it; purge
// drops what was deleted before a time, and what is restorable since a
// time is what garbage collection keeps the blobs of.
func TestADeleteKeepsTheManifestRestorableOnlyWhileThePolicySaysSo(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		keep := true
		db.SetKeepDeleted(func() bool { return keep })
		now := time.Now()
		at := func(minutesAgo int) hlc.Version {
			return hlc.Version{Time: hlc.TimeAt(now.Add(-time.Duration(minutesAgo) * time.Minute)), Region: "westeurope"}
		}
		put := func(repo string, d digest.Digest, v hlc.Version, tags ...string) {
			t.Helper()
			if err := db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
				if _, err := tx.PutManifest(ctx, &meta.Manifest{Repo: repo, Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json",
					Size: 7, Payload: []byte(`{"m":1}`), Created: now, Version: v}); err != nil {
					return err
				}
				for _, tag := range tags {
					if _, err := tx.SetTag(ctx, repo, tag, d, v, now); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		local, peer, old, off := digest.FromString("local"), digest.FromString("peer"), digest.FromString("old"), digest.FromString("off")
		put("r", local, at(60), "a", "b")
		put("r", peer, at(60), "c")
		put("r", old, at(5))
		put("r", off, at(60), "d")
		if err := db.UpdateRepo(ctx, "r", func(tx *meta.Tx) error {
			_, err := tx.DeleteManifest(ctx, "r", local, at(30), now)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// A peer's delete: its tag delete first, then the tombstone, at
		// one version; and a tombstone older than the manifest here.
		if err := db.Update(ctx, func(tx *meta.Tx) error {
			if _, err := tx.DeleteTag(ctx, "r", "c", at(20), now); err != nil {
				return err
			}
			if _, err := tx.TombstoneManifest(ctx, "r", peer, at(20), now); err != nil {
				return err
			}
			_, err := tx.TombstoneManifest(ctx, "r", old, at(10), now)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		keep = false
		if err := db.Update(ctx, func(tx *meta.Tx) error {
			_, err := tx.TombstoneManifest(ctx, "r", off, at(20), now)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		got, err := db.DeletedManifests(ctx, "r", now.Add(-time.Hour), 10)
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, m := range got {
			listed = append(listed, m.Digest.Encoded()[:6]+":"+strings.Join(m.Tags, ",")+":"+string(m.Payload))
		}
		want := []string{peer.Encoded()[:6] + `:c:{"m":1}`, local.Encoded()[:6] + `:a,b:{"m":1}`}
		if strings.Join(listed, " ") != strings.Join(want, " ") {
			t.Fatalf("kept %v, want %v (newest delete first)", listed, want)
		}
		if got[1].Deleted != at(30) {
			t.Fatalf("the local delete kept at version %v, want %v", got[1].Deleted, at(30))
		}
		// Restorable since 25 minutes ago: only the peer's delete.
		if err := db.UpdateRepo(ctx, "r", func(tx *meta.Tx) error {
			ps, err := tx.RestorablePayloads(ctx, "r", now.Add(-25*time.Minute))
			if err != nil || len(ps) != 1 || ps[0].Digest != peer {
				t.Errorf("restorable since 25 min ago: %v %v, want the peer's", ps, err)
			}
			purged, err := tx.PurgeDeleted(ctx, "r", now.Add(-25*time.Minute), "", hlc.Version{})
			if err != nil || len(purged) != 1 || purged[0] != local {
				t.Errorf("purged %v (%v), want the local delete", purged, err)
			}
			// One manifest, up to a delete older than its own: nothing.
			purged, err = tx.PurgeDeleted(ctx, "r", time.Time{}, peer, at(21))
			if err != nil || len(purged) != 0 {
				t.Errorf("purged %v (%v) by an older delete, want none", purged, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// Pushed again: live, nothing kept.
		put("r", peer, at(1), "c")
		if got, err := db.DeletedManifests(ctx, "r", now.Add(-time.Hour), 10); err != nil || len(got) != 0 {
			t.Fatalf("after the purge and the push again: %+v %v", got, err)
		}
		if _, err := db.DeletedManifest(ctx, "r", local); err != meta.ErrNotFound {
			t.Fatalf("the purged manifest: %v", err)
		}
	})
}

// TestTagHistoryStorageFor1000Moves records 1,000 moves of 100 tags with
// the history on, on both stores, and reports what tag_history takes
// (docs/performance.md); it fails only if nothing was recorded.
func TestTagHistoryStorageFor1000Moves(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		db.SetKeepDeleted(func() bool { return true })
		before, err := db.TableBytes(ctx, "tag_history")
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for i := range 1000 {
			v := hlc.Version{Time: hlc.TimeAt(now) + int64(i), Region: "southeastasia"}
			d := digest.FromString(string(rune(i)))
			if err := db.UpdateRepo(ctx, "team/app", func(tx *meta.Tx) error {
				_, err := tx.SetTag(ctx, "team/app", "release-"+string(rune('a'+i%26))+string(rune('a'+i/26%4)), d, v, now)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		moves, err := db.TagHistory(ctx, "team/app", "", 10_000)
		if err != nil || len(moves) < 1000 {
			t.Fatalf("recorded %d moves (%v), want 1,000 and a marker per tag", len(moves), err)
		}
		after, err := db.TableBytes(ctx, "tag_history")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("tag history: %d bytes for %d rows (1,000 moves of 104 tags and their markers): %.0f bytes per move", after-before, len(moves), float64(after-before)/1000)
	})
}
