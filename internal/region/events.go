package region

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/webhook"
)

// Webhook events are written to the outbox in the transaction of the
// change that causes them (see package webhook for which change fires
// which action where), so a change and its deliveries commit or vanish
// together, and a crash loses neither.

// MembersFunc returns the regions a manifest must be present in to be
// "replicated everywhere": this one and every Ready peer.
type MembersFunc func(ctx context.Context) ([]string, error)

// SetMembers sets how the region learns the registry's Ready regions (the
// replicator knows them). Without it the region counts only itself. Call
// it before the region serves.
func (r *Region) SetMembers(f MembersFunc) { r.members = f }

func (r *Region) memberNames(ctx context.Context) ([]string, error) {
	if r.members == nil {
		return []string{r.cfg.Name}, nil
	}
	return r.members(ctx)
}

// hook is a webhook by name.
type hook struct {
	name string
	cfg  *webhook.Config
}

// webhooks returns the live webhooks, read in tx. A value that does not
// parse (from a newer version, say) is skipped.
func (r *Region) webhooks(ctx context.Context, tx *meta.Tx) ([]hook, error) {
	settings, err := tx.Settings(ctx, webhook.Kind)
	if err != nil {
		return nil, err
	}
	out := make([]hook, 0, len(settings))
	for _, s := range settings {
		if c, err := webhook.Parse(s.Value); err == nil {
			out = append(out, hook{s.Name, c})
		}
	}
	return out, nil
}

func wanted(hooks []hook, action, repo, tag, region string) bool {
	for _, h := range hooks {
		if h.cfg.Wants(action, repo, tag, region) {
			return true
		}
	}
	return false
}

// emit writes ev to the outbox, in tx, once for every webhook that wants
// it; the caller wakes the deliverer after the commit.
func (r *Region) emit(ctx context.Context, tx *meta.Tx, hooks []hook, ev webhook.Event) error {
	var payload []byte
	for _, h := range hooks {
		if !h.cfg.Wants(ev.Action, ev.Target.Repository, ev.Target.Tag, r.cfg.Name) {
			continue
		}
		if payload == nil {
			ev.ID, ev.Timestamp, ev.Region = webhook.NewID(), r.now().UTC(), r.cfg.Name
			var err error
			if payload, err = json.Marshal(ev); err != nil {
				return err
			}
		}
		err := tx.EnqueueDelivery(ctx, meta.Delivery{EventID: ev.ID, Webhook: h.name, Action: ev.Action, Payload: payload,
			Created: r.now(), WebhookCreated: h.cfg.Created})
		if err != nil {
			return fmt.Errorf("webhook %s: enqueue %s: %w", h.name, ev.Action, err)
		}
	}
	return nil
}

// emitNow is emit for a change already read: it reads the webhooks in tx.
func (r *Region) emitNow(ctx context.Context, tx *meta.Tx, ev webhook.Event) error {
	hooks, err := r.webhooks(ctx, tx)
	if err != nil || len(hooks) == 0 {
		return err
	}
	return r.emit(ctx, tx, hooks, ev)
}

// imageEvent is an event about manifest d of repo (tag "" for none).
func imageEvent(action, repo string, d digest.Digest, mediaType string, size int64, tag string) webhook.Event {
	return webhook.Event{Action: action, Target: webhook.Target{
		MediaType: mediaType, Size: size, Digest: d.String(), Length: size, Repository: repo, Tag: tag}}
}

// replicatedEvent is the event of an image that arrived from peer (""
// when fetched by read-through or anti-entropy) and was written in origin.
func replicatedEvent(repo string, d digest.Digest, mediaType string, size int64, tag, peer, origin string) webhook.Event {
	ev := imageEvent(webhook.ActionReplicated, repo, d, mediaType, size, tag)
	ev.Request = webhook.Request{Method: "REPLICATE", Host: peer}
	ev.Origin = origin
	return ev
}

// pushed fires push for a manifest pushed here and, when a webhook wants
// replicated-everywhere for it, keeps that event until every Ready region
// acknowledged the manifest (checked now: a registry of one region is
// everywhere at once).
func (r *Region) pushed(ctx context.Context, tx *meta.Tx, rec *meta.Manifest, tag string) error {
	hooks, err := r.webhooks(ctx, tx)
	if err != nil || len(hooks) == 0 {
		return err
	}
	ev := imageEvent(webhook.ActionPush, rec.Repo, rec.Digest, rec.MediaType, rec.Size, tag)
	ev.Request = webhook.RequestFrom(ctx)
	if err := r.emit(ctx, tx, hooks, ev); err != nil {
		return err
	}
	if !wanted(hooks, webhook.ActionReplicatedEverywhere, rec.Repo, tag, r.cfg.Name) {
		return nil
	}
	ev.Origin = r.cfg.Name
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if err := tx.AddPendingEverywhere(ctx, rec.Repo, rec.Digest, b, r.now()); err != nil {
		return err
	}
	return r.checkEverywhere(ctx, tx, rec.Repo, rec.Digest)
}

// checkEverywhere fires replicated-everywhere for manifest d of repo, in
// tx, when a push here waits for it and every Ready region holds it. The
// pending event is removed in the same transaction: it fires once.
func (r *Region) checkEverywhere(ctx context.Context, tx *meta.Tx, repo string, d digest.Digest) error {
	pending, err := tx.PendingEverywhere(ctx, repo, d)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	members, err := r.memberNames(ctx)
	if err != nil {
		return err
	}
	present, err := tx.Presence(ctx, repo, d)
	if err != nil {
		return err
	}
	if !heldByAll(present, members) {
		return nil
	}
	if err := tx.DeletePendingEverywhere(ctx, repo, d); err != nil {
		return err
	}
	var ev webhook.Event
	if err := json.Unmarshal(pending, &ev); err != nil {
		return fmt.Errorf("pending event of %s@%s: %w", repo, d, err)
	}
	ev.Action = webhook.ActionReplicatedEverywhere
	return r.emitNow(ctx, tx, ev)
}

// heldByAll reports whether every one of members is in present.
func heldByAll(present map[string]time.Time, members []string) bool {
	for _, m := range members {
		if _, ok := present[m]; !ok {
			return false
		}
	}
	return true
}

// SweepEverywhere checks every push still waiting to be everywhere: the
// set of Ready regions can change (a region deleted, say) without an ack
// arriving.
func (r *Region) SweepEverywhere(ctx context.Context) error {
	pending, err := r.db.PendingEverywhereList(ctx, 1000)
	if err != nil {
		return err
	}
	if len(pending) == 0 {
		return nil
	}
	members, err := r.memberNames(ctx)
	if err != nil {
		return err
	}
	for _, p := range pending {
		// A read first: only a push that is everywhere now costs a write
		// (which checks again, in its transaction).
		present, err := r.db.Presence(ctx, p[0], digest.Digest(p[1]))
		if err != nil {
			return err
		}
		if !heldByAll(present, members) {
			continue
		}
		err = r.db.Update(ctx, func(tx *meta.Tx) error {
			return r.checkEverywhere(ctx, tx, p[0], digest.Digest(p[1]))
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ReplicationFailed fires replication-failed: this region has been unable
// to apply a change from peer (about repo, d and tag) for a while, because
// of cause.
func (r *Region) ReplicationFailed(ctx context.Context, peer, repo string, d digest.Digest, tag string, cause error) error {
	ev := webhook.Event{Action: webhook.ActionReplicationFailed,
		Target:  webhook.Target{Repository: repo, Digest: d.String(), Tag: tag},
		Request: webhook.Request{Method: "REPLICATE", Host: peer}, Origin: peer, Error: cause.Error()}
	if d == "" {
		ev.Target.Digest = ""
	}
	return r.db.Update(ctx, func(tx *meta.Tx) error { return r.emitNow(ctx, tx, ev) })
}

// Ping enqueues a ping event for webhook name alone (whatever its actions,
// scope and status) and returns its delivery id.
func (r *Region) Ping(ctx context.Context, name string) (int64, error) {
	hook, err := r.Webhook(ctx, name)
	if err != nil {
		return 0, err
	}
	ev := webhook.Event{ID: webhook.NewID(), Timestamp: r.now().UTC(), Action: webhook.ActionPing,
		Request: webhook.RequestFrom(ctx), Region: r.cfg.Name}
	payload, err := json.Marshal(ev)
	if err != nil {
		return 0, err
	}
	var id int64
	err = r.db.Update(ctx, func(tx *meta.Tx) error {
		if err := tx.EnqueueDelivery(ctx, meta.Delivery{EventID: ev.ID, Webhook: name, Action: ev.Action, Payload: payload,
			Created: r.now(), WebhookCreated: hook.Created}); err != nil {
			return err
		}
		var err error
		id, err = tx.LastDeliveryID(ctx)
		return err
	})
	return id, err
}

// Webhook returns webhook name's configuration, or NAME_UNKNOWN.
func (r *Region) Webhook(ctx context.Context, name string) (*webhook.Config, error) {
	s, err := r.Setting(ctx, webhook.Kind, name)
	if err != nil {
		return nil, err
	}
	return webhook.Parse(s.Value)
}

// ErrNoWebhook: the webhook of a delivery was deleted.
var ErrNoWebhook = errors.New("webhook deleted")

// The outbox, for webhook.Deliverer.

// DeliveryWebhook returns the configuration a delivery is sent with;
// ErrNoWebhook when the webhook is gone.
func (r *Region) DeliveryWebhook(ctx context.Context, name string) (*webhook.Config, error) {
	s, err := r.db.Setting(ctx, webhook.Kind, name)
	if isNotFound(err) {
		return nil, ErrNoWebhook
	}
	if err != nil {
		return nil, err
	}
	return webhook.Parse(s.Value)
}

// ClaimDeliveries takes up to n due deliveries for lease (see
// meta.Tx.ClaimDeliveries).
func (r *Region) ClaimDeliveries(ctx context.Context, lease time.Duration, n int) ([]meta.Delivery, error) {
	var out []meta.Delivery
	err := r.db.UpdateDeliveries(ctx, func(tx *meta.Tx) error {
		var err error
		out, err = tx.ClaimDeliveries(ctx, r.now(), lease, n)
		return err
	})
	return out, err
}

// FinishDelivery records the outcome of an attempt.
func (r *Region) FinishDelivery(ctx context.Context, d meta.Delivery) error {
	return r.db.UpdateDeliveries(ctx, func(tx *meta.Tx) error { return tx.FinishDelivery(ctx, d) })
}

// HoldDelivery keeps a delivery of a disabled webhook for later.
func (r *Region) HoldDelivery(ctx context.Context, d meta.Delivery) error {
	return r.db.UpdateDeliveries(ctx, func(tx *meta.Tx) error { return tx.HoldDelivery(ctx, d) })
}

// CancelDelivery drops a delivery whose webhook is gone.
func (r *Region) CancelDelivery(ctx context.Context, id int64) error {
	return r.db.UpdateDeliveries(ctx, func(tx *meta.Tx) error { return tx.CancelDelivery(ctx, id, r.now()) })
}

// PruneDeliveries forgets finished deliveries older than before.
func (r *Region) PruneDeliveries(ctx context.Context, before time.Time) error {
	return r.db.UpdateDeliveries(ctx, func(tx *meta.Tx) error { return tx.PruneDeliveries(ctx, before) })
}

// NextDelivery returns when the earliest pending delivery is due.
func (r *Region) NextDelivery(ctx context.Context) (time.Time, bool, error) {
	return r.db.NextDelivery(ctx)
}

// Deliveries lists webhook name's deliveries made by this region, newest
// first.
func (r *Region) Deliveries(ctx context.Context, name string, n int) ([]meta.Delivery, error) {
	return r.db.Deliveries(ctx, name, n)
}

// Delivery returns one delivery by id.
func (r *Region) Delivery(ctx context.Context, id int64) (*meta.Delivery, error) {
	return r.db.GetDelivery(ctx, id)
}

// DeliveryWake is signalled when deliveries were enqueued.
func (r *Region) DeliveryWake() <-chan struct{} { return r.outboxWake }

func (r *Region) wakeDeliverer() {
	select {
	case r.outboxWake <- struct{}{}:
	default:
	}
}
