package region

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/webhook"
)

// Soft delete, as ACR's: while the policy (kind PolicyKind, name
// SoftDeleteName, any region changes it) is enabled, a manifest deleted
// by a client, a repository delete or retention stays restorable for
// Days in every region: each region keeps its payload and the tags it had
// as the delete reaches it (meta/softdelete.go), garbage collection keeps
// its blobs, and a restore pushes it again at a new version, which wins
// over the delete in every region as any push does. Pulls answer 404 as
// for any delete. The period counts from the delete's version time, the
// same in every region; once it has passed, garbage collection drops
// what was kept and then the blobs.

// SoftDeleteName is the soft-delete policy's setting name.
const SoftDeleteName = "soft-delete"

// SoftDelete is the soft-delete policy.
type SoftDelete struct {
	Status string `json:"status"` // enabled or disabled
	Days   int    `json:"days"`   // 1 to 90
	// HistoryDays is how long tag history is kept (0: Days).
	HistoryDays int `json:"historyDays,omitempty" yaml:"historyDays,omitempty"`
}

// Enabled reports whether deletes are kept restorable.
func (p SoftDelete) Enabled() bool { return p.Status == "enabled" }

// Validate checks the policy.
func (p SoftDelete) Validate() error {
	if p.Status != "enabled" && p.Status != "disabled" {
		return fmt.Errorf("status %q: give enabled or disabled", p.Status)
	}
	if p.Days < 1 || p.Days > 90 {
		return fmt.Errorf("days %d: give 1 to 90", p.Days)
	}
	if p.HistoryDays < 0 || p.HistoryDays > 365 {
		return fmt.Errorf("historyDays %d: give 0 (as days) to 365", p.HistoryDays)
	}
	return nil
}

// HistoryPeriod is how long tag history is kept (0 when disabled).
func (p SoftDelete) HistoryPeriod() time.Duration {
	if p.HistoryDays > 0 && p.Enabled() {
		return time.Duration(p.HistoryDays) * 24 * time.Hour
	}
	return p.Period()
}

// Period is how long a delete stays restorable (0 when disabled).
func (p SoftDelete) Period() time.Duration {
	if !p.Enabled() {
		return 0
	}
	return time.Duration(p.Days) * 24 * time.Hour
}

// SoftDeletePolicy returns the policy (disabled, 7 days, when never set).
func (r *Region) SoftDeletePolicy(ctx context.Context) (SoftDelete, error) {
	p := SoftDelete{Status: "disabled", Days: 7}
	s, err := r.db.Setting(ctx, PolicyKind, SoftDeleteName)
	if isNotFound(err) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(s.Value, &p); err != nil {
		return p, fmt.Errorf("soft-delete policy: %w", err)
	}
	return p, nil
}

// SetSoftDeletePolicy sets the policy, for every region.
func (r *Region) SetSoftDeletePolicy(ctx context.Context, p SoftDelete) error {
	if err := p.Validate(); err != nil {
		return ocierr.RequestInvalid.Withf("soft-delete: %v", err)
	}
	value, _ := json.Marshal(p)
	_, err := r.PutSetting(ctx, PolicyKind, SoftDeleteName, value)
	return err
}

// softDeleteNow is the policy as this node read it lately
// (RecentSettings); disabled when it cannot be read: nothing is kept that
// no policy asked for.
func (r *Region) softDeleteNow() SoftDelete {
	p := SoftDelete{Status: "disabled", Days: 7}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ss, err := r.RecentSettings(ctx, PolicyKind)
	if err != nil {
		r.log.Warn("soft-delete policy unreadable; deletes are not kept restorable until it is", "error", err)
		return p
	}
	for _, s := range ss {
		if s.Name == SoftDeleteName {
			if err := json.Unmarshal(s.Value, &p); err != nil {
				r.log.Warn("soft-delete policy unreadable; deletes are not kept restorable until it is", "error", err)
				return SoftDelete{Status: "disabled", Days: 7}
			}
		}
	}
	return p
}

// keepDeleted is what the metadata store asks at each manifest delete.
func (r *Region) keepDeleted() bool { return r.softDeleteNow().Enabled() }

// DeletedManifest is a manifest kept restorable, as listed.
type DeletedManifest struct {
	meta.DeletedManifest
	DeletedAt       time.Time `json:"deletedAt"`
	DeletedIn       string    `json:"deletedIn"` // the region that deleted it
	RestorableUntil time.Time `json:"restorableUntil"`
	Region          string    `json:"region"` // the region that answered
}

// maxDeletedListed bounds a listing of deleted manifests.
const maxDeletedListed = 1000

// DeletedManifests lists repo's manifests restorable now (of every
// repository with repo ""), newest delete first: none while the policy
// is disabled.
func (r *Region) DeletedManifests(ctx context.Context, repo string) ([]DeletedManifest, error) {
	return r.deletedManifests(ctx, repo, maxDeletedListed)
}

// RecentlyDeleted lists the n newest deletes restorable now, of every
// repository.
func (r *Region) RecentlyDeleted(ctx context.Context, n int) ([]DeletedManifest, error) {
	return r.deletedManifests(ctx, "", n)
}

func (r *Region) deletedManifests(ctx context.Context, repo string, n int) ([]DeletedManifest, error) {
	p, err := r.SoftDeletePolicy(ctx)
	if err != nil || !p.Enabled() {
		return []DeletedManifest{}, err
	}
	ms, err := r.db.DeletedManifests(ctx, repo, r.now().Add(-p.Period()), n)
	if err != nil {
		return nil, err
	}
	out := make([]DeletedManifest, 0, len(ms))
	for _, m := range ms {
		out = append(out, r.deletedView(m, p))
	}
	return out, nil
}

// RestorableUntil says until when the manifest ref names (a digest, or a
// deleted tag: the newest kept manifest that had it) is restorable here;
// ok false when it is not.
func (r *Region) RestorableUntil(ctx context.Context, repo, ref string) (time.Time, bool, error) {
	ms, err := r.DeletedManifests(ctx, repo)
	if err != nil {
		return time.Time{}, false, err
	}
	for _, m := range ms { // newest delete first
		if m.Digest.String() == ref || slices.Contains(m.Tags, ref) {
			return m.RestorableUntil, true, nil
		}
	}
	return time.Time{}, false, nil
}

func (r *Region) deletedView(m meta.DeletedManifest, p SoftDelete) DeletedManifest {
	at := m.Deleted.Wall().UTC()
	return DeletedManifest{DeletedManifest: m, DeletedAt: at, DeletedIn: m.Deleted.Region, RestorableUntil: at.Add(p.Period()), Region: r.cfg.Name}
}

// RestoreResult is what a restore did.
type RestoreResult struct {
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
	Tags       []string      `json:"tags"`
	Region     string        `json:"region"`
}

// RestoreManifest makes manifest d of repo, kept restorable here, live
// again with tag (or, without, the tags it had) as a push at a new
// version: it replicates as a push and wins over the delete everywhere.
// A tag that points at another manifest now is moved back only with
// force. Locks and quotas apply as to any push.
func (r *Region) RestoreManifest(ctx context.Context, repo string, d digest.Digest, tag string, force bool) (RestoreResult, error) {
	p, err := r.SoftDeletePolicy(ctx)
	if err != nil {
		return RestoreResult{}, err
	}
	if !p.Enabled() {
		return RestoreResult{}, ocierr.Unsupported.Withf("soft delete is disabled: nothing is kept to restore (georeg config soft-delete update --status enabled)")
	}
	m, err := r.db.DeletedManifest(ctx, repo, d)
	if isNotFound(err) || (err == nil && r.now().After(m.Deleted.Wall().Add(p.Period()))) {
		return RestoreResult{}, ocierr.ManifestUnknown.WithDetail(
			fmt.Sprintf("manifest %s of repository %s is not restorable in region %s: not deleted, deleted before soft delete was enabled or over %d days ago, or purged", d, repo, r.cfg.Name, p.Days),
			map[string]string{"repository": repo, "digest": d.String()})
	}
	if err != nil {
		return RestoreResult{}, err
	}
	tags := m.Tags
	if tag != "" {
		tags = []string{tag}
	}
	var moved []string
	for _, t := range tags {
		cur, err := r.db.GetTag(ctx, repo, t)
		if err != nil && !errors.Is(err, meta.ErrNotFound) {
			return RestoreResult{}, err
		}
		if err == nil && cur.Digest != d {
			moved = append(moved, t+" (now "+cur.Digest.String()+")")
		}
	}
	if len(moved) > 0 && !force {
		return RestoreResult{}, ocierr.AlreadyExists.WithDetail(
			fmt.Sprintf("tags %v point at other manifests since the delete; restore with --force to move them back, or --tag to choose another", moved),
			map[string]string{"repository": repo, "digest": d.String()})
	}
	// One push with every tag, in one transaction: a crash leaves the
	// manifest restorable or live with all its tags.
	parsed, err := oci.ParseManifest(m.MediaType, m.Payload)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("the kept manifest %s does not parse: %w", d, err)
	}
	if err := r.commitManifest(ctx, manifestRecord(repo, d, parsed, m.Payload, r.now()), parsed, tags, nil); err != nil {
		return RestoreResult{}, fmt.Errorf("restore %s: %w", d, err)
	}
	refs := tags
	if len(refs) == 0 {
		refs = []string{d.String()}
	}
	// Audited and announced as a restore, beside the push it was.
	err = r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		detail := "deleted at version " + m.Deleted.String()
		if err := r.audit(ctx, tx, AuditRestore, repo, strings.Join(refs, ","), d, "ok", detail); err != nil {
			return err
		}
		return r.emitNow(ctx, tx, r.softDeleteEvent(ctx, webhook.ActionRestore, repo, d, m.MediaType, m.Size, strings.Join(tags, ",")))
	})
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restored %s, but its audit entry and event failed: %w", d, err)
	}
	return RestoreResult{Repository: repo, Digest: d, Tags: tags, Region: r.cfg.Name}, nil
}

// softDeleteEvent is a restore or purge event of the request in ctx.
func (r *Region) softDeleteEvent(ctx context.Context, action, repo string, d digest.Digest, mediaType string, size int64, tag string) webhook.Event {
	ev := imageEvent(action, repo, d, mediaType, size, tag)
	ev.Request = webhook.RequestFrom(ctx)
	return ev
}

// purged audits and announces that what was kept of manifest d of repo
// was dropped here, in tx.
func (r *Region) purged(ctx context.Context, tx *meta.Tx, repo string, d digest.Digest, why string) error {
	if err := r.audit(ctx, tx, AuditPurge, repo, d.String(), d, "ok", why); err != nil {
		return err
	}
	return r.emitNow(ctx, tx, r.softDeleteEvent(ctx, webhook.ActionPurge, repo, d, "", 0, ""))
}

// PurgeKind is the setting kind of purges: one per manifest purged
// (named REPOSITORY@DIGEST), whose value is the delete it purges. A
// purge asked of any region so reaches every region, which drops what it
// kept of that delete (or an older one) as the setting arrives.
const PurgeKind = "purge"

// Purge is a purge's setting value.
type Purge struct {
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	// Deleted is the version of the delete purged (hlc.Version.String).
	Deleted string `json:"deleted"`
}

// PurgeManifest drops what soft delete kept of manifest d of repo now,
// in every region (a setting that replicates), rather than at the end of
// the period; NAME_UNKNOWN-style MANIFEST_UNKNOWN when this region keeps
// nothing of it.
func (r *Region) PurgeManifest(ctx context.Context, repo string, d digest.Digest) (Purge, error) {
	m, err := r.db.DeletedManifest(ctx, repo, d)
	if isNotFound(err) {
		return Purge{}, ocierr.ManifestUnknown.WithDetail(
			fmt.Sprintf("region %s keeps nothing of manifest %s of repository %s to purge (not deleted, never kept, or purged)", r.cfg.Name, d, repo),
			map[string]string{"repository": repo, "digest": d.String()})
	}
	if err != nil {
		return Purge{}, err
	}
	p := Purge{Repository: repo, Digest: d.String(), Deleted: m.Deleted.String()}
	value, _ := json.Marshal(p)
	if _, err := r.PutSetting(ctx, PurgeKind, repo+"@"+d.String(), value); err != nil {
		return Purge{}, err
	}
	return p, nil // dropped here by settingChanged, as everywhere
}

// applyPurge drops what this region kept of the delete a purge setting
// names (or an older delete of that manifest).
func (r *Region) applyPurge(ctx context.Context, s meta.Setting) {
	var p Purge
	if s.Deleted || json.Unmarshal(s.Value, &p) != nil {
		return
	}
	v, err := hlc.ParseVersion(p.Deleted)
	d, derr := digest.Parse(p.Digest)
	if err != nil || derr != nil {
		r.log.WarnContext(ctx, "a purge names no delete; ignored", "setting", s.Name)
		return
	}
	err = r.db.UpdateRepo(ctx, p.Repository, func(tx *meta.Tx) error {
		purged, err := tx.PurgeDeleted(ctx, p.Repository, time.Time{}, d, v)
		for _, pd := range purged {
			if err := r.purged(ctx, tx, p.Repository, pd, "purged at once"); err != nil {
				return err
			}
		}
		return err
	})
	if err != nil {
		r.log.WarnContext(ctx, "purge", "repository", p.Repository, "digest", d, "error", err)
	}
}
