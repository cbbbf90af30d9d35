package region_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// TestASnapshotLoadedOverADeleteDoesNotBringTheBlobBack (invariant 9): a
// peer's snapshot loaded into a region that holds rows of its own (a
// follower's join that starts late, or pushes arriving while a region
// joins) merges by last-writer-wins across a blob's link and its
// tombstone, which live in two tables: a link no newer than a delete
// known here goes, a later one stays, whichever side each came from.
// (Found by a clean-clone run of TestInvariant9DeletesSurviveKill9OfAnyRegion:
// a region served a blob it had deleted, for good.)
func TestASnapshotLoadedOverADeleteDoesNotBringTheBlobBack(t *testing.T) {
	num := func(n int64) json.Number { return json.Number(strconv.FormatInt(n, 10)) }
	link := func(repo string, d digest.Digest, size int, v hlc.Version) *meta.TableRows {
		return &meta.TableRows{Columns: []string{"repo", "digest", "size", "created_at", "version", "origin"},
			Rows: [][]any{{repo, d.String(), num(int64(size)), num(time.Now().UnixMilli()), num(v.Time), v.Region}}}
	}
	tomb := func(repo string, d digest.Digest, v hlc.Version) *meta.TableRows {
		return &meta.TableRows{Columns: []string{"repo", "digest", "version", "origin", "deleted_at"},
			Rows: [][]any{{repo, d.String(), num(v.Time), v.Region, num(time.Now().UnixMilli())}}}
	}
	for i, tc := range []struct {
		name string
		// here: what this region did: push, then delete (and push again)
		deleteHere, pushAgain bool
		// the snapshot's rows, at versions relative to the push here
		snapLink, snapTomb func(push, del hlc.Version) *hlc.Version
		linked             bool
	}{
		{name: "deleted here, the peer's older link", deleteHere: true,
			snapLink: func(push, _ hlc.Version) *hlc.Version { return &push }},
		{name: "deleted here, the peer's link and its own older delete", deleteHere: true,
			snapLink: func(push, _ hlc.Version) *hlc.Version { return &push },
			snapTomb: func(push, _ hlc.Version) *hlc.Version { v := push; v.Time--; return &v }},
		{name: "deleted here, the peer pushed again later", deleteHere: true,
			snapLink: func(_, del hlc.Version) *hlc.Version { v := del; v.Time += 10; return &v },
			linked:   true},
		{name: "pushed here again after the peer's delete", deleteHere: true, pushAgain: true,
			snapTomb: func(_, del hlc.Version) *hlc.Version { return &del }, linked: true},
		{name: "the peer deleted after the push here",
			snapTomb: func(push, _ hlc.Version) *hlc.Version { v := push; v.Time += 10; return &v }},
		{name: "the peer's delete older than the push here",
			snapTomb: func(push, _ hlc.Version) *hlc.Version { v := push; v.Time--; return &v }, linked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			r := open(t, t.TempDir(), time.Hour)
			defer r.Close()
			repo := fmt.Sprintf("snap/del%d", i)
			b := []byte("a blob no manifest uses " + tc.name)
			d := digest.FromBytes(b)
			put := func() hlc.Version {
				if _, err := r.PutBlob(ctx, repo, d, int64(len(b)), bytes.NewReader(b)); err != nil {
					t.Fatal(err)
				}
				v, err := r.BlobVersion(ctx, repo, d)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			push := put()
			push.Region = "westeurope" // as if pushed there and replicated here
			var del hlc.Version
			if tc.deleteHere {
				if err := r.DeleteBlob(ctx, repo, d); err != nil {
					t.Fatal(err)
				}
				var err error
				if del, _, err = r.BlobTombstone(ctx, repo, d); err != nil {
					t.Fatal(err)
				}
			}
			if tc.pushAgain {
				put()
			}
			sr := &meta.SnapshotRepo{Repo: repo, Tables: map[string]*meta.TableRows{
				"repositories": {Columns: []string{"name", "created_at"}, Rows: [][]any{{repo, num(time.Now().UnixMilli())}}},
			}}
			if tc.snapLink != nil {
				sr.Tables["blobs"] = link(repo, d, len(b), *tc.snapLink(push, del))
			}
			if tc.snapTomb != nil {
				sr.Tables["blob_tombstones"] = tomb(repo, d, *tc.snapTomb(push, del))
			}
			if err := r.LoadSnapshotRepo(ctx, sr); err != nil {
				t.Fatal(err)
			}
			_, err := r.StatBlob(ctx, repo, d)
			if linked := err == nil; linked != tc.linked {
				t.Fatalf("after the snapshot the blob is linked: %t (%v), want %t", linked, err, tc.linked)
			}
		})
	}
}
