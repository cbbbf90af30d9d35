package region_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// TestAPeersVersionFarInTheFutureChangesNothing: a tag delete, a tag move
// or a setting from a peer stamped more than the max drift ahead (a
// runaway clock, or a forged 2^63-1) is refused with hlc.ErrFuture and
// changes nothing: the tag keeps its digest, the setting is not stored,
// and this region's next version is still close to real time.
func TestAPeersVersionFarInTheFutureChangesNothing(t *testing.T) {
	ctx := t.Context()
	r := open(t, t.TempDir(), time.Hour)
	defer r.Close()
	const repo = "drift/app"
	m := manifestFor(t, r, repo, "one")
	one, err := r.PutManifest(ctx, repo, "v1", "application/vnd.oci.image.manifest.v1+json", m)
	if err != nil {
		t.Fatal(err)
	}
	d := one.Digest
	other := manifestFor(t, r, repo, "two")
	two, err := r.PutManifest(ctx, repo, "v2", "application/vnd.oci.image.manifest.v1+json", other)
	if err != nil {
		t.Fatal(err)
	}
	d2 := two.Digest
	future := func(ahead time.Duration) hlc.Version {
		return v(time.Now().Add(ahead).UnixMilli()<<16, "mallory")
	}
	for name, ver := range map[string]hlc.Version{"an hour ahead": future(time.Hour), "2^63-1": v(math.MaxInt64, "mallory")} {
		if err := r.ApplyTagDelete(ctx, "mallory", 1, repo, "v1", ver); !errors.Is(err, hlc.ErrFuture) {
			t.Errorf("tag delete %s: %v", name, err)
		}
		if err := r.ApplyTag(ctx, "mallory", 1, repo, "v1", d2, ver, true); !errors.Is(err, hlc.ErrFuture) {
			t.Errorf("tag move %s: %v", name, err)
		}
		err := r.ApplySetting(ctx, "mallory", 1, meta.Setting{Kind: "replica", Name: "ghost", Value: []byte(`{"endpoint":"http://127.0.0.1:9"}`), Version: ver})
		if !errors.Is(err, hlc.ErrFuture) {
			t.Errorf("setting %s: %v", name, err)
		}
	}
	if got, err := r.ResolveTag(ctx, repo, "v1"); err != nil || got != d {
		t.Fatalf("v1 is %s (%v), want %s", got, err, d)
	}
	if _, err := r.Setting(ctx, "replica", "ghost"); err == nil {
		t.Fatal("the far-future setting was stored")
	}
	if next := r.Clock().Now(); next.Wall().After(time.Now().Add(time.Minute)) {
		t.Fatalf("the clock moved to %s", next.Wall())
	}
	// Within the drift, a peer's later write wins as usual.
	if err := r.ApplyTag(ctx, "mallory", 1, repo, "v1", d2, future(time.Minute), true); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.ResolveTag(ctx, repo, "v1"); got != d2 {
		t.Fatalf("v1 is %s after a move a minute ahead, want %s", got, d2)
	}
}

// TestASnapshotWithAVersionFarInTheFutureIsRefused: a joining region
// loads no repository of a peer's snapshot with a version stamped more
// than the max drift ahead, and its clock stays near real time.
func TestASnapshotWithAVersionFarInTheFutureIsRefused(t *testing.T) {
	ctx := t.Context()
	r := open(t, t.TempDir(), time.Hour)
	defer r.Close()
	ahead := json.Number(strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli()<<16, 10))
	sr := &meta.SnapshotRepo{Repo: "drift/snap", Tables: map[string]*meta.TableRows{
		"repositories": {Columns: []string{"name"}, Rows: [][]any{{"drift/snap"}}},
		"tags":         {Columns: []string{"repo", "name", "version", "origin"}, Rows: [][]any{{"drift/snap", "v1", ahead, "mallory"}}},
	}}
	if err := r.LoadSnapshotRepo(ctx, sr); !errors.Is(err, hlc.ErrFuture) {
		t.Fatalf("load: %v, want hlc.ErrFuture", err)
	}
	if empty, err := r.Empty(ctx); err != nil || !empty {
		t.Fatalf("the store holds something after the refused load (empty %v, %v)", empty, err)
	}
	if next := r.Clock().Now(); next.Wall().After(time.Now().Add(time.Minute)) {
		t.Fatalf("the clock moved to %s", next.Wall())
	}
}

// TestARestartedRegionOrdersItsWritesAfterEveryVersionItHolds: a peer
// whose clock runs a minute ahead (within the drift) deletes a blob and
// a setting here; this region restarts, and a client pushes the blob
// again and sets the setting anew at once. Those writes come after the
// deletes, so their versions must be later: a restarted clock that
// starts only past its tags and manifests stamps them earlier, and every
// other region then takes the acknowledged push for one the delete
// already removed (it refuses the link, and any manifest using it waits
// for a blob it never gets).
func TestARestartedRegionOrdersItsWritesAfterEveryVersionItHolds(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	const repo = "drift/restart"
	blob := []byte("pushed, deleted by a peer ahead of us, pushed again")
	d := digest.FromBytes(blob)
	ahead := v(time.Now().Add(time.Minute).UnixMilli()<<16, "westus")
	r := open(t, dir, time.Hour)
	if _, err := r.PutBlob(ctx, repo, d, int64(len(blob)), bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	if err := r.ApplyBlobDelete(ctx, "westus", 1, repo, d, ahead); err != nil {
		t.Fatal(err)
	}
	if err := r.ApplySetting(ctx, "westus", 2, meta.Setting{Kind: "webhook", Name: "ahead", Deleted: true, Version: ahead}); err != nil {
		t.Fatal(err)
	}
	head, err := r.FeedHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()

	r = open(t, dir, time.Hour)
	defer r.Close()
	if next := r.Clock().Now(); !ahead.Less(next) {
		t.Errorf("after the restart the clock issues %s, not after the peer's delete %s", next, ahead)
	}
	if _, err := r.PutBlob(ctx, repo, d, int64(len(blob)), bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	recs, err := r.Feed(ctx, head, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	var pushed *meta.Record
	for i := range recs {
		if recs[i].Kind == "blob" && recs[i].Digest == d {
			pushed = &recs[i]
		}
	}
	if pushed == nil {
		t.Fatalf("no feed record for the push again among %d records", len(recs))
	}
	if !ahead.Less(pushed.Version) {
		t.Fatalf("the push after the restart is version %s, before the delete it follows (%s): other regions refuse it", pushed.Version, ahead)
	}
}
