package meta_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// TestPresenceIsTheRowsAndTheRegionsThroughTheirMarks: where a manifest is
// follows from its presence rows and the marks peers published, with no
// row per manifest per region.
func TestPresenceIsTheRowsAndTheRegionsThroughTheirMarks(t *testing.T) {
	at := time.UnixMilli(1000)
	applied := map[string]map[string]meta.AppliedMark{
		"westeurope":    {"eastus": {Seq: 10, Updated: at}},
		"southeastasia": {"eastus": {Seq: 9, Updated: at}, "westeurope": {Seq: 4, Updated: at}},
	}
	for _, c := range []struct {
		name string
		held []meta.PresenceRow
		want []string
	}{
		{"no rows", nil, nil},
		{"a row without a mark counts its region only", []meta.PresenceRow{{Region: "eastus", Since: at}}, []string{"eastus"}},
		{"through the mark counts; one short does not", []meta.PresenceRow{{Region: "eastus", Since: at, Seq: 10}}, []string{"eastus", "westeurope"}},
		{"a lower mark counts both", []meta.PresenceRow{{Region: "eastus", Since: at, Seq: 9}}, []string{"eastus", "southeastasia", "westeurope"}},
		{"a mark in another origin's feed", []meta.PresenceRow{{Region: "eastus", Since: at, Seq: 11}, {Region: "westeurope", Since: at, Seq: 4}}, []string{"eastus", "southeastasia", "westeurope"}},
		{"a mark no region reached", []meta.PresenceRow{{Region: "eastus", Since: at, Seq: 11}}, []string{"eastus"}},
	} {
		got := slices.Sorted(maps.Keys(meta.Present(c.held, applied)))
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: present in %v, want %v", c.name, got, c.want)
		}
	}
}

// TestAPushIsMarkedAtItsLastRecord: on both dialects (PostgreSQL numbers
// the feed at commit), a push's mark is the seq of the last record it
// appended, and a write that fails leaves no mark; this region's applied
// marks stop short of a parked record.
func TestAPushIsMarkedAtItsLastRecord(t *testing.T) { eachDialect(t, testAPushIsMarkedAtItsLastRecord) }

func testAPushIsMarkedAtItsLastRecord(t *testing.T, db *meta.DB) {
	ctx := t.Context()
	now := time.Now()
	d := digest.FromString("marked")
	push := func(tags ...string) {
		t.Helper()
		err := db.UpdateRepo(ctx, "app", func(tx *meta.Tx) error {
			v := hlc.Version{Time: hlc.TimeAt(now), Region: "eastus"}
			recs := []meta.Record{{Kind: meta.KindManifest, Repo: "app", Digest: d, Version: v, Created: now}}
			for _, tag := range tags {
				recs = append(recs, meta.Record{Kind: meta.KindTag, Repo: "app", Digest: d, Tag: tag, Version: v, Created: now})
			}
			for _, rec := range recs {
				if err := tx.AppendFeed(ctx, rec); err != nil {
					return err
				}
			}
			return tx.MarkPresence(ctx, "app", d, "eastus", now)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Something else first, so the push's records are not at 1.
	if err := db.UpdateRepo(ctx, "other", func(tx *meta.Tx) error {
		return tx.AppendFeed(ctx, meta.Record{Kind: meta.KindTag, Repo: "other", Digest: d, Tag: "x", Version: hlc.Version{Time: 1, Region: "eastus"}, Created: now})
	}); err != nil {
		t.Fatal(err)
	}
	push("v1", "v2") // records 2, 3, 4: marked at 4
	for seq, want := range map[int64]bool{3: false, 4: true} {
		mark := map[string]int64{"eastus": seq}
		if err := db.Update(ctx, func(tx *meta.Tx) error {
			_, err := tx.SetPeerApplied(ctx, fmt.Sprintf("peer%d", seq), mark, now)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		p, err := db.Presence(ctx, "app", d)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p[fmt.Sprintf("peer%d", seq)]; ok != want {
			t.Fatalf("a region through %d: present %v, want %v (%v)", seq, ok, want, p)
		}
	}
	// A peer's cursor at 20 with its record 12 parked: applied through 11.
	if err := db.Update(ctx, func(tx *meta.Tx) error {
		if err := tx.SetCursor(ctx, "westeurope", 20, now); err != nil {
			return err
		}
		return tx.Park(ctx, meta.Parked{Peer: "westeurope", Seq: 12, Record: []byte("{}"), ParkedAt: now, NextAt: now})
	}); err != nil {
		t.Fatal(err)
	}
	marks, err := db.AppliedMarks(ctx)
	if err != nil || marks["westeurope"] != 11 {
		t.Fatalf("applied marks %v (%v): want westeurope at 11, short of its parked record", marks, err)
	}
}

// TestSeveralRegionsPresenceIsOneWrite: SetPresences writes a row for
// each region named, as SetPresence one by one would: a mark is added to a
// row that had none and a row's mark is kept once set; a region named
// twice is one row with the higher mark.
func TestSeveralRegionsPresenceIsOneWrite(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		d := digest.FromString("image")
		at := time.UnixMilli(1000)
		set := func(held ...meta.Held) {
			t.Helper()
			if err := db.Update(ctx, func(tx *meta.Tx) error {
				if _, err := tx.SetPeerApplied(ctx, "westeurope", map[string]int64{"eastus": 10}, at); err != nil {
					return err
				}
				return tx.SetPresences(ctx, "app", d, at, held...)
			}); err != nil {
				t.Fatal(err)
			}
		}
		present := func() []string {
			t.Helper()
			p, err := db.Presence(ctx, "app", d)
			if err != nil {
				t.Fatal(err)
			}
			return slices.Sorted(maps.Keys(p))
		}
		set(meta.Held{Region: "southeastasia"}, meta.Held{Region: "eastus"})
		if got := present(); !slices.Equal(got, []string{"eastus", "southeastasia"}) {
			t.Fatalf("two rows without marks: present in %v", got)
		}
		set(meta.Held{Region: "southeastasia"}, meta.Held{Region: "eastus"}, meta.Held{Region: "eastus", Seq: 10})
		if got := present(); !slices.Equal(got, []string{"eastus", "southeastasia", "westeurope"}) {
			t.Fatalf("a mark added to a row without one: present in %v", got)
		}
		set(meta.Held{Region: "eastus", Seq: 12}, meta.Held{Region: "eastus"})
		if got := present(); !slices.Equal(got, []string{"eastus", "southeastasia", "westeurope"}) {
			t.Fatalf("a row's mark was moved past what westeurope applied: present in %v", got)
		}
	})
}
