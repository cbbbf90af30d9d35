package region

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/webhook"
)

// The audit log is per region: each region records the repository
// changes, configuration changes and logins it served, in the transaction of the change (a
// crash loses neither). It is not replicated; the management API gathers
// every region's on read. Entries are kept for AuditRetention.

// AuditRetention is how long audit entries are kept.
const AuditRetention = 90 * 24 * time.Hour

// Audit actions.
const (
	AuditPush       = "push"
	AuditDelete     = "delete"
	AuditDeleteBlob = "delete_blob"
	AuditRestore    = "restore" // a soft-deleted manifest restored here
	AuditPurge      = "purge"   // what soft delete kept of a manifest dropped here
	AuditDenied     = "denied"  // a repository request refused (403)
	AuditLogin      = "login"
	AuditConfig     = "config" // a registry setting (lock, user, token, webhook, rule, replica) changed here
)

// audit appends an entry for the request in ctx, in tx.
func (r *Region) audit(ctx context.Context, tx *meta.Tx, action, repo, ref string, d digest.Digest, outcome, detail string) error {
	req := webhook.RequestFrom(ctx)
	return tx.AppendAudit(ctx, meta.AuditEntry{At: r.now(), Actor: req.Actor, Action: action, Repo: repo, Reference: ref,
		Digest: d.String(), Client: req.Client, RequestID: req.ID, Outcome: outcome, Detail: detail})
}

// RecordAudit appends an entry for the request in ctx on its own: a login
// or a refused request, which change nothing else.
func (r *Region) RecordAudit(ctx context.Context, actor, action, repo, outcome, detail string) error {
	req := webhook.RequestFrom(ctx)
	if actor == "" {
		actor = req.Actor
	}
	return r.db.UpdateAudit(ctx, func(tx *meta.Tx) error {
		return tx.AppendAudit(ctx, meta.AuditEntry{At: r.now(), Actor: actor, Action: action, Repo: repo,
			Client: req.Client, RequestID: req.ID, Outcome: outcome, Detail: detail})
	})
}

// Audit returns up to n of this region's entries since, newest first.
func (r *Region) Audit(ctx context.Context, since time.Time, n int) ([]meta.AuditEntry, error) {
	return r.db.Audit(ctx, since, n)
}

func (r *Region) pruneAudit(ctx context.Context) error {
	return r.db.Update(ctx, func(tx *meta.Tx) error { return tx.PruneAudit(ctx, r.now().Add(-AuditRetention)) })
}

// RecentTags returns the n tags that changed here last.
func (r *Region) RecentTags(ctx context.Context, n int) ([]meta.TagRow, error) {
	return r.db.RecentTags(ctx, n)
}

// TagCounts returns repositories with their tag counts.
func (r *Region) TagCounts(ctx context.Context, n int) ([]meta.RepoCount, error) {
	return r.db.TagCounts(ctx, n)
}

// Presence returns the regions known to hold manifest d of repo.
func (r *Region) Presence(ctx context.Context, repo string, d digest.Digest) (map[string]time.Time, error) {
	return r.db.Presence(ctx, repo, d)
}

// TagList lists repo's live tags.
func (r *Region) TagList(ctx context.Context, repo string) ([]meta.TagInfo, error) {
	return r.db.TagList(ctx, repo)
}

// ManifestList lists repo's live manifests with their tags.
func (r *Region) ManifestList(ctx context.Context, repo string) ([]meta.ManifestInfo, error) {
	return r.db.ManifestList(ctx, repo)
}

// RepositoryExists reports whether repo is known here.
func (r *Region) RepositoryExists(ctx context.Context, repo string) (bool, error) {
	return r.db.RepositoryExists(ctx, repo)
}
