package region

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// TestARecordFromAPeerAppliesBesideAPushOfAnotherRepository: a region
// applies its peers' feeds while it takes pushes. A record applied from a
// peer writes its repository and the peer's cursor, so it runs beside
// writes of other repositories on every node of the region; as a
// region-wide write it waited for every write under way and held back
// every write asked after it. While node a's write of repository "one" is
// inside its transaction, node b applies a peer's records of repository
// "two" (a tag, a manifest and a blob delete, and one that needs nothing
// here) and moves the peer's cursor.
func TestARecordFromAPeerAppliesBesideAPushOfAnotherRepository(t *testing.T) {
	ctx := t.Context()
	nodes := sharedNodes(t, "a", "b")
	a, b := nodes[0], nodes[1]
	inside, release, doneA := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		doneA <- a.db.UpdateRepo(ctx, "one", func(tx *meta.Tx) error {
			if _, err := tx.SetTag(ctx, "one", "held", digest.FromString("x"), hlc.Version{Time: 1, Region: "eastus"}, time.Now()); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	v := hlc.Version{Time: hlc.TimeAt(time.Now()), Region: "westeurope"}
	d := digest.FromString("gone")
	applies := []struct {
		name string
		fn   func() error
	}{
		{"a tag delete", func() error { return b.ApplyTagDelete(ctx, "westeurope", 1, "two", "v1", v) }},
		{"a manifest delete", func() error { return b.ApplyManifestDelete(ctx, "westeurope", 2, "two", d, v) }},
		{"a blob delete", func() error { return b.ApplyBlobDelete(ctx, "westeurope", 3, "two", d, v) }},
		{"a record skipped", func() error { return b.Skip(ctx, "westeurope", 4, "two") }},
	}
	for _, ap := range applies {
		done := make(chan error, 1)
		go func() { done <- ap.fn() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", ap.name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s of repository two from a peer waited 10 s for a write of repository one on another node", ap.name)
		}
	}
	if c, err := b.Cursor(ctx, "westeurope"); err != nil || c != 4 {
		t.Fatalf("westeurope's cursor %d (%v), want 4", c, err)
	}
	close(release)
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
}
