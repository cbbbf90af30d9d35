package meta_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/meta"
)

// TestAClaimedDeliveryIsNotClaimedAgainUntilItsLeaseEnds: the outbox hands
// a due delivery to one sender; a sender that dies leaves it due again
// when its lease ends; a recorded outcome decides what comes next.
func TestAClaimedDeliveryIsNotClaimedAgainUntilItsLeaseEnds(t *testing.T) {
	eachDialect(t, testAClaimedDeliveryIsNotClaimedAgainUntilItsLeaseEnds)
}

func testAClaimedDeliveryIsNotClaimedAgainUntilItsLeaseEnds(t *testing.T, db *meta.DB) {
	ctx := t.Context()
	t0 := time.UnixMilli(1_000_000)
	update := func(fn func(*meta.Tx) error) {
		t.Helper()
		if err := db.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(at time.Time) []meta.Delivery {
		t.Helper()
		var out []meta.Delivery
		update(func(tx *meta.Tx) error {
			var err error
			out, err = tx.ClaimDeliveries(ctx, at, time.Minute, 10)
			return err
		})
		return out
	}
	update(func(tx *meta.Tx) error {
		for _, id := range []string{"e1", "e2"} {
			if err := tx.EnqueueDelivery(ctx, meta.Delivery{EventID: id, Webhook: "hook1", Action: "push", Payload: []byte(`{}`), Created: t0}); err != nil {
				return err
			}
		}
		return nil
	})
	got := claim(t0)
	if len(got) != 2 || got[0].EventID != "e1" || got[1].EventID != "e2" {
		t.Fatalf("first claim: %+v", got)
	}
	if again := claim(t0.Add(59 * time.Second)); len(again) != 0 {
		t.Fatalf("claimed twice within the lease: %+v", again)
	}
	// e1 delivered; e2's sender died: after the lease e2 alone is due.
	d := got[0]
	d.State, d.StatusCode, d.Updated = meta.DeliveryDelivered, 204, t0.Add(time.Second)
	update(func(tx *meta.Tx) error { return tx.FinishDelivery(ctx, d) })
	if again := claim(t0.Add(61 * time.Second)); len(again) != 1 || again[0].EventID != "e2" {
		t.Fatalf("after the lease: %+v", again)
	}
	// e2 failed: pending again at its next attempt.
	d = got[1]
	d.State, d.StatusCode, d.Error, d.Next, d.Updated = meta.DeliveryPending, 503, "down", t0.Add(5*time.Minute), t0.Add(62*time.Second)
	update(func(tx *meta.Tx) error { return tx.FinishDelivery(ctx, d) })
	if next, ok, err := db.NextDelivery(ctx); err != nil || !ok || !next.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("next delivery %v %v %v", next, ok, err)
	}
	log, err := db.Deliveries(ctx, "hook1", 10)
	if err != nil || len(log) != 2 || log[0].EventID != "e2" || log[0].Attempts != 1 || log[0].StatusCode != 503 || log[1].State != meta.DeliveryDelivered {
		t.Fatalf("log: %+v %v", log, err)
	}
	update(func(tx *meta.Tx) error { return tx.PruneDeliveries(ctx, t0.Add(time.Hour)) })
	if log, _ := db.Deliveries(ctx, "hook1", 10); len(log) != 1 || log[0].EventID != "e2" {
		t.Fatalf("prune removed a pending delivery or kept a finished one: %+v", log)
	}
	update(func(tx *meta.Tx) error { return tx.CancelDelivery(ctx, log[0].ID, t0) })
	if _, ok, _ := db.NextDelivery(context.Background()); ok {
		t.Fatal("a canceled delivery is still due")
	}
}

// TestTheDelivererIsToldOfDeliveriesEnqueuedAndOfNothingElse: a
// transaction that enqueued a delivery tells OnDeliveriesEnqueued's
// function once it committed; one that wrote something else, or whose
// enqueue was undone with the transaction, does not.
func TestTheDelivererIsToldOfDeliveriesEnqueuedAndOfNothingElse(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *meta.DB) {
		ctx := t.Context()
		told := 0
		db.OnDeliveriesEnqueued(func() { told++ })
		enqueue := func(tx *meta.Tx) error {
			return tx.EnqueueDelivery(ctx, meta.Delivery{EventID: "e1", Webhook: "hook1", Action: "push", Payload: []byte(`{}`), Created: time.Now()})
		}
		if err := db.Update(ctx, func(tx *meta.Tx) error { return tx.SetCursor(ctx, "east", 1, time.Now()) }); err != nil {
			t.Fatal(err)
		}
		if told != 0 {
			t.Fatalf("told %d times after a write that enqueued nothing", told)
		}
		if err := db.Update(ctx, func(tx *meta.Tx) error {
			if err := enqueue(tx); err != nil {
				return err
			}
			return errors.New("refused")
		}); err == nil {
			t.Fatal("the refused write committed")
		}
		if told != 0 {
			t.Fatalf("told %d times after an enqueue that was undone", told)
		}
		if err := db.Update(ctx, enqueue); err != nil {
			t.Fatal(err)
		}
		if told != 1 {
			t.Fatalf("told %d times after one committed enqueue; want 1", told)
		}
	})
}
