package meta_test

import (
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/storetest"
)

// TestABookkeepingWriteRunsBesideRepositoryWritesAndRegionWideOnesAlone:
// the writes a node makes every few seconds whatever its load (its job
// leases, webhook delivery claims, published job state, traffic counts,
// audit entries of logins) used to be region-wide: each waited for every
// write under way and held back every write asked after it. While node
// A's write of a repository is inside its transaction, each of node B's
// bookkeeping writes commits; and a region-wide write still waits for a
// bookkeeping write inside its transaction (it excludes everything).
func TestABookkeepingWriteRunsBesideRepositoryWritesAndRegionWideOnesAlone(t *testing.T) {
	dsn := storetest.Postgres(t)
	a, b := openPostgres(t, dsn), openPostgres(t, dsn)
	waiting := waitingForALock(t, dsn)
	ctx := t.Context()
	now := time.Now()

	release, doneA := holdInside(func(fn func(*meta.Tx) error) error { return a.UpdateRepo(ctx, "busy", fn) }, func(tx *meta.Tx) error {
		_, err := tx.SetTag(ctx, "busy", "v1", digest.FromString("x"), hlc.Version{Time: 1, Region: "eastus"}, now)
		return err
	})
	defer release()
	writes := []struct {
		name string
		fn   func() error
	}{
		{"a job lease", func() error {
			_, err := b.AcquireLease(ctx, "gc", "node-b", time.Minute, now)
			return err
		}},
		{"a job lease given up", func() error { return b.ReleaseLease(ctx, "gc", "node-b") }},
		{"published job state", func() error { return b.Publish(ctx, "peer_status", "westeurope", "node-b", "{}", now) }},
		{"a claim of due deliveries", func() error {
			return b.UpdateDeliveries(ctx, func(tx *meta.Tx) error {
				_, err := tx.ClaimDeliveries(ctx, now, time.Minute, 10)
				return err
			})
		}},
		{"traffic counts", func() error {
			return b.UpdateTraffic(ctx, func(tx *meta.Tx) error {
				return tx.AddTraffic(ctx, now, "node-b", "egress", "westeurope", 1)
			})
		}},
		{"an audit entry of a login", func() error {
			return b.UpdateAudit(ctx, func(tx *meta.Tx) error {
				return tx.AppendAudit(ctx, meta.AuditEntry{At: now, Actor: "ci", Action: "login", Outcome: "ok"})
			})
		}},
	}
	for _, w := range writes {
		done := make(chan error, 1)
		go func() { done <- w.fn() }()
		select {
		case err := <-done:
			if err != nil {
				release()
				t.Fatalf("%s: %v", w.name, err)
			}
		case <-time.After(10 * time.Second):
			release()
			t.Fatalf("%s waited 10 s for a write of a repository on another node", w.name)
		}
	}
	release()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}

	// A region-wide write waits for a bookkeeping write under way.
	release, doneA = holdInside(func(fn func(*meta.Tx) error) error { return a.UpdateTraffic(ctx, fn) }, func(tx *meta.Tx) error {
		return tx.AddTraffic(ctx, now, "node-a", "egress", "westeurope", 1)
	})
	defer release()
	regionWide := make(chan error, 1)
	go func() {
		regionWide <- b.Update(ctx, func(tx *meta.Tx) error { return tx.SetRegionState(ctx, "probe", 1) })
	}()
	waitFor(t, "the region-wide write to wait for the bookkeeping write", waiting)
	select {
	case err := <-regionWide:
		release()
		t.Fatalf("a region-wide write committed while a bookkeeping write was inside its transaction (%v)", err)
	default:
	}
	release()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	if err := <-regionWide; err != nil {
		t.Fatal(err)
	}

	// Outside its scope a bookkeeping write fails.
	if err := b.UpdateTraffic(ctx, func(tx *meta.Tx) error { return tx.SetRegionState(ctx, "probe", 2) }); err == nil {
		t.Fatal("a traffic write set a region flag")
	}
	if err := b.UpdateTraffic(ctx, func(tx *meta.Tx) error { return tx.SetCursor(ctx, "westeurope", 1, now) }); err == nil {
		t.Fatal("a traffic write moved a peer's cursor")
	}
	if err := b.UpdateRepo(ctx, "busy", func(tx *meta.Tx) error {
		return tx.AddTraffic(ctx, now, "node-b", "egress", "westeurope", 1)
	}); err == nil {
		t.Fatal("a repository write added traffic")
	}
}

// holdInside runs write in a transaction of update and holds that
// transaction open, after write, until release is called (any number of
// times); done then gets update's result. It returns once write ran.
func holdInside(update func(func(*meta.Tx) error) error, write func(*meta.Tx) error) (release func(), done <-chan error) {
	inside, held, out := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		out <- update(func(tx *meta.Tx) error {
			if err := write(tx); err != nil {
				return err
			}
			close(inside)
			<-held
			return nil
		})
	}()
	select {
	case <-inside:
	case err := <-out:
		out <- err // write failed: nothing held
	}
	var once sync.Once
	return func() { once.Do(func() { close(held) }) }, out
}
