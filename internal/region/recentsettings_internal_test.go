package region

import (
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// TestASettingIsReadAsWrittenOnceItsWriteCommitted: the soft-delete policy
// enabled and read (so the node's recent view holds it), then disabled,
// once written here and once applied from a peer's feed. Read between
// the commit and the write's return, where a collection running beside
// it would read it, the policy is the new one: the node's view never
// outlives a write it made, even one read while the write was under way
// (it once did until the write returned, and a collection kept what a
// disabled policy no longer keeps).
func TestASettingIsReadAsWrittenOnceItsWriteCommitted(t *testing.T) {
	ctx := t.Context()
	r, err := Open(ctx, Config{Name: "eastus", DataDir: t.TempDir(), GCInterval: -1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	policy := func(status string) json.RawMessage {
		b, _ := json.Marshal(SoftDelete{Status: status, Days: 7})
		return b
	}
	var between []string // the policy as read at each commit
	r.recent.hook = func(stage string) {
		p := r.softDeleteNow().Status // while writing: the old one
		if stage == "committed" {
			between = append(between, p)
		}
	}

	if _, err := r.PutSetting(ctx, PolicyKind, SoftDeleteName, policy("enabled")); err != nil {
		t.Fatal(err)
	}
	if !r.keepDeleted() { // read now: the view holds it
		t.Fatal("the policy written enabled is read disabled")
	}
	if _, err := r.PutSetting(ctx, PolicyKind, SoftDeleteName, policy("disabled")); err != nil {
		t.Fatal(err)
	}
	if r.keepDeleted() {
		t.Fatal("the policy written disabled is read enabled after the write")
	}

	if _, err := r.PutSetting(ctx, PolicyKind, SoftDeleteName, policy("enabled")); err != nil {
		t.Fatal(err)
	}
	_ = r.keepDeleted()
	applied := meta.Setting{Kind: PolicyKind, Name: SoftDeleteName, Value: policy("disabled"),
		Version: hlc.Version{Time: hlc.TimeAt(time.Now().Add(time.Second)), Region: "westeurope"}}
	if err := r.ApplySetting(ctx, "westeurope", 1, applied); err != nil {
		t.Fatal(err)
	}
	if want := []string{"enabled", "disabled", "enabled", "disabled"}; !slices.Equal(between, want) {
		t.Fatalf("the policy read between each commit and its return: %v, want %v", between, want)
	}
}
