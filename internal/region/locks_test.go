package region_test

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/ocierr"
)

// TestLocksRefuseWhatTheyForbidAndNothingElse: each lock, in turn on a
// fresh region: a repository write lock refuses pushes and not deletes;
// a repository delete lock refuses deletes and not pushes; an image lock
// (write or delete disabled) pins its tag — the tag cannot move or go,
// its manifest cannot be deleted, pushing the same digest again is let
// through — and a replicated change to the tag is refused too. Every
// refusal is DENIED naming the lock and the command that lifts it.
func TestLocksRefuseWhatTheyForbidAndNothingElse(t *testing.T) {
	type outcome struct{ pushNew, pushSame, deleteTag, deleteManifest, replicatedMove bool }
	for _, tc := range []struct {
		name          string
		tag           string // "" for the repository's lock
		write, delete bool
		want          outcome // true: allowed
	}{
		{"repository write-disabled", "", false, true, outcome{false, false, true, true, true}},
		{"repository delete-disabled", "", true, false, outcome{true, true, false, false, true}},
		{"image write-disabled", "v1", false, true, outcome{false, true, false, false, false}},
		{"image delete-disabled", "v1", true, false, outcome{false, true, false, false, false}},
		{"image unlocked again", "v1", true, true, outcome{true, true, true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			r := open(t, t.TempDir(), 0)
			defer r.Close()
			one := manifestFor(t, r, "lock/app", "one")
			two := manifestFor(t, r, "lock/app", "two")
			d1, d2 := digest.FromBytes(one), digest.FromBytes(two)
			if _, err := r.PutManifest(ctx, "lock/app", "v1", "application/vnd.oci.image.manifest.v1+json", one); err != nil {
				t.Fatal(err)
			}
			if err := r.ApplyManifest(ctx, "westeurope", 1, "lock/app", d2, "application/vnd.oci.image.manifest.v1+json", two, v(1, "westeurope"), ""); err != nil {
				t.Fatal(err)
			}
			if _, err := r.SetLock(ctx, "lock/app", tc.tag, tc.write, tc.delete); err != nil {
				t.Fatal(err)
			}
			allowed := func(what string, err error, want bool) {
				t.Helper()
				if want && err != nil {
					t.Errorf("%s: refused (%v), want allowed", what, err)
				}
				// The refusal names the flag that lifts it: write-enabled
				// for a write-disabled lock (which also keeps its image
				// from being deleted, as in ACR), else delete-enabled.
				flag := "--delete-enabled true"
				if !tc.write {
					flag = "--write-enabled true"
				}
				if !want && (!ocierr.Denied.Is(err) || !strings.Contains(err.Error(), "georeg repository update --name lock/app") || !strings.Contains(err.Error(), flag)) {
					t.Errorf("%s: %v, want DENIED naming the lock and %s", what, err, flag)
				}
			}
			_, err := r.PutManifest(ctx, "lock/app", "v1", "application/vnd.oci.image.manifest.v1+json", two)
			allowed("moving v1 by a push", err, tc.want.pushNew)
			if err == nil { // put it back for the checks after
				if _, err := r.PutManifest(ctx, "lock/app", "v1", "application/vnd.oci.image.manifest.v1+json", one); err != nil {
					t.Fatal(err)
				}
			}
			_, err = r.PutManifest(ctx, "lock/app", "v1", "application/vnd.oci.image.manifest.v1+json", one)
			allowed("pushing v1's own digest again", err, tc.want.pushSame)
			err = r.ApplyTag(ctx, "westeurope", 2, "lock/app", "v1", d2, v(time.Now().Add(time.Minute).UnixMilli()<<16, "westeurope"), true)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := r.ResolveTag(ctx, "lock/app", "v1")
			if moved := got == d2; moved != tc.want.replicatedMove {
				t.Errorf("a replicated move of v1: moved %v, want %v", moved, tc.want.replicatedMove)
			}
			if got == d2 { // back, for the delete checks
				if err := r.ApplyTag(ctx, "westeurope", 3, "lock/app", "v1", d1, v(time.Now().Add(2*time.Minute).UnixMilli()<<16, "westeurope"), true); err != nil {
					t.Fatal(err)
				}
			}
			allowed("deleting v1", r.DeleteManifest(ctx, "lock/app", "v1"), tc.want.deleteTag)
			allowed("deleting manifest one", r.DeleteManifest(ctx, "lock/app", d1.String()), tc.want.deleteManifest)
		})
	}
}
