package region

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/webhook"
)

// Retention of untagged manifests, as ACR's `config retention`: a setting
// (kind "policy", name "retention") any region changes. Each region sweeps
// the manifests it originated (its own pushes), so a manifest is deleted
// once, by one region, and the delete replicates like a client's. A
// manifest is untagged when no live tag points at it and no live index of
// its repository lists it; a referrer whose subject is live (a signature,
// an SBOM) is attached to that subject and kept. Locks are honoured.

// PolicyKind is the setting kind of registry policies.
const PolicyKind = "policy"

// RetentionName is the retention policy's setting name.
const RetentionName = "retention"

// Retention is the retention policy.
type Retention struct {
	Status string `json:"status"` // enabled or disabled
	Days   int    `json:"days"`   // 0 to 365
	Type   string `json:"type"`   // UntaggedManifests
}

// Validate says what is wrong with the policy.
func (p Retention) Validate() error {
	switch {
	case p.Status != "enabled" && p.Status != "disabled":
		return fmt.Errorf("status %q: enabled or disabled", p.Status)
	case p.Days < 0 || p.Days > 365:
		return fmt.Errorf("days %d: 0 to 365", p.Days)
	case p.Type != "UntaggedManifests":
		return fmt.Errorf("type %q: only UntaggedManifests", p.Type)
	}
	return nil
}

// RetentionPolicy returns the policy (disabled when never set).
func (r *Region) RetentionPolicy(ctx context.Context) (Retention, error) {
	p := Retention{Status: "disabled", Days: 7, Type: "UntaggedManifests"}
	s, err := r.db.Setting(ctx, PolicyKind, RetentionName)
	if isNotFound(err) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	return p, json.Unmarshal(s.Value, &p)
}

// RetentionReport is what a sweep deleted.
type RetentionReport struct {
	Region  string   `json:"region"`
	Deleted []string `json:"deleted"` // repo@digest
	Kept    int      `json:"lockedKept"`
	// Evicted are the cached images the artifact cache evicted, untouched
	// for their rule's period (repo@digest), EvictKept those a lock kept.
	Evicted   []string `json:"evicted"`
	EvictKept int      `json:"evictLockedKept,omitempty"`
}

// SweepRetention deletes this region's untagged manifests older than the
// policy's days, when it is enabled, and has the artifact cache evict
// what its rules say (SetEvictor).
func (r *Region) SweepRetention(ctx context.Context) (RetentionReport, error) {
	rep, err := r.sweepUntagged(ctx)
	if err != nil || r.evictor == nil {
		return rep, err
	}
	rep.Evicted, rep.EvictKept, err = r.evictor(ctx)
	if rep.Evicted == nil {
		rep.Evicted = []string{}
	}
	return rep, err
}

// sweepUntagged deletes this region's untagged manifests older than the
// policy's days, when it is enabled.
func (r *Region) sweepUntagged(ctx context.Context) (RetentionReport, error) {
	rep := RetentionReport{Region: r.cfg.Name, Deleted: []string{}, Evicted: []string{}}
	p, err := r.RetentionPolicy(ctx)
	if err != nil || p.Status != "enabled" {
		return rep, err
	}
	cutoff := r.now().Add(-time.Duration(p.Days) * 24 * time.Hour)
	ctx = webhook.WithRequest(ctx, &webhook.Request{Actor: "retention", Method: "RETENTION"})
	// Each manifest is swept by one region, so one delete replicates: the
	// region it was pushed in, or, for a manifest whose origin is no
	// longer a region of the registry (deleted, retired), the first
	// region by name of those that are.
	sweeps, err := r.Sweeps(ctx)
	if err != nil {
		return rep, err
	}
	last := ""
	for {
		repos, err := r.db.Repositories(ctx, last, 1000)
		if err != nil {
			return rep, err
		}
		for _, repo := range repos {
			ds, err := r.untagged(ctx, repo, cutoff, sweeps)
			if err != nil {
				return rep, err
			}
			for _, d := range ds {
				err := r.DeleteManifest(ctx, repo, d.String())
				switch {
				case err == nil:
					rep.Deleted = append(rep.Deleted, repo+"@"+d.String())
				case isDenied(err), ocierr.Unsupported.Is(err): // locked, or listed by an index live meanwhile
					rep.Kept++
				case isUnknown(err):
					// deleted meanwhile
				default:
					return rep, err
				}
			}
		}
		if len(repos) < 1000 {
			return rep, nil
		}
		last = repos[len(repos)-1]
	}
}

// untagged lists repo's manifests created before cutoff, by an origin
// this region sweeps for, that nothing keeps.
func (r *Region) untagged(ctx context.Context, repo string, cutoff time.Time, sweeps func(origin string) bool) ([]digest.Digest, error) {
	ms, err := r.db.ManifestList(ctx, repo)
	if err != nil {
		return nil, err
	}
	live := map[digest.Digest]bool{}
	children := map[digest.Digest]bool{}
	for _, m := range ms {
		live[m.Digest] = true
		if oci.IsIndex(m.MediaType) {
			if parsed, err := oci.ParseManifest(m.MediaType, m.Payload); err == nil {
				for _, c := range parsed.Manifests {
					children[c.Digest] = true
				}
			}
		}
	}
	var out []digest.Digest
	for _, m := range ms {
		if len(m.Tags) > 0 || children[m.Digest] || !sweeps(m.Origin) || !m.Created.Before(cutoff) ||
			(m.Subject != "" && live[digest.Digest(m.Subject)]) {
			continue
		}
		out = append(out, m.Digest)
	}
	return out, nil
}

// RunRetention sweeps every interval until ctx ends.
func (r *Region) RunRetention(ctx context.Context) error {
	t := time.NewTicker(r.cfg.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if rep, err := r.SweepRetention(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "retention sweep", "error", err)
		} else if len(rep.Deleted)+len(rep.Evicted) > 0 {
			r.log.InfoContext(ctx, "retention deleted untagged manifests and evicted cached ones", "deleted", len(rep.Deleted), "evicted", len(rep.Evicted))
		}
	}
}

func isDenied(err error) bool  { return ocierr.Denied.Is(err) }
func isUnknown(err error) bool { return ocierr.ManifestUnknown.Is(err) }
