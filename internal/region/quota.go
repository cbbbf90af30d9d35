package region

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	digest "github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
)

// Storage quotas, as Harbor's per-project quotas: a limit on what a
// repository, or the whole registry, holds. A quota is a setting (kind
// QuotaKind, named by its scope) any region changes and every region
// applies to its own store: a client's push that would take the scope
// over the limit in the region it reaches is refused with DENIED naming
// the limit. Replication is never refused (a region that refused what
// another accepted would hold images in part): content pushed elsewhere
// counts here once it arrives, and the next push here is refused.
const (
	QuotaKind = "quota"
	// RegistryScope names the registry-wide quota: the region's blobs,
	// each once however many repositories link it, and its manifests.
	RegistryScope = "*"
)

// storedFigureAge bounds how old a node's figure of the region's stored
// bytes (a read of every link) is; pushes this node accepted since are
// added to it (docs/repositories.md, Quotas). The quota settings
// themselves are read as RecentSettings.
const storedFigureAge = 5 * time.Second

// Quota is a storage limit.
type Quota struct {
	LimitBytes int64 `json:"limitBytes"`
}

// QuotaView is a quota as listed: its scope (a repository or
// RegistryScope), its limit, and what counts against it in Region now.
type QuotaView struct {
	Scope      string `json:"scope"`
	LimitBytes int64  `json:"limitBytes"`
	UsedBytes  int64  `json:"usedBytes"`
	Region     string `json:"region"`
}

// ValidateQuotaScope checks a quota's scope: a repository name or
// RegistryScope.
func ValidateQuotaScope(scope string) error {
	if scope == RegistryScope {
		return nil
	}
	if err := oci.ValidateRepository(scope); err != nil {
		return fmt.Errorf("quota scope %q is neither %q (the registry) nor a repository: %v", scope, RegistryScope, err)
	}
	return nil
}

// Validate checks a quota's limit.
func (q Quota) Validate() error {
	if q.LimitBytes <= 0 {
		return errors.New("limitBytes must be more than 0")
	}
	return nil
}

// quotaUse is one quota that applies to a push: its scope, its limit and
// what counts against it now.
type quotaUse struct {
	Scope       string
	Limit, Used int64
}

// crossed returns the first of uses that adding bytes would take over
// its limit. Adding nothing (a blob the repository links already, a
// manifest it holds) crosses none, even a quota already exceeded: a push
// again of what is there changes nothing.
func crossed(uses []quotaUse, adding int64) (quotaUse, bool) {
	if adding <= 0 {
		return quotaUse{}, false
	}
	for _, u := range uses {
		if u.Used+adding > u.Limit {
			return u, true
		}
	}
	return quotaUse{}, false
}

// quotas is a node's figure of the region's stored bytes.
type quotas struct {
	mu          sync.Mutex
	stored      int64     // the region's stored bytes, as read at storedAt
	storedAt    time.Time // zero: read it again
	storedSince int64     // bytes this node's pushes added since storedAt
}

// quotaLimits returns the limits of repo's quota and of the registry's
// (0: none), from the settings as read lately (RecentSettings).
func (r *Region) quotaLimits(ctx context.Context, repo string) (repoLimit, registryLimit int64, err error) {
	ss, err := r.RecentSettings(ctx, QuotaKind)
	if err != nil {
		return 0, 0, fmt.Errorf("quota settings: %w", err)
	}
	for _, s := range ss {
		var v Quota
		if (s.Name == repo || s.Name == RegistryScope) && json.Unmarshal(s.Value, &v) == nil && v.LimitBytes > 0 {
			if s.Name == repo {
				repoLimit = v.LimitBytes
			} else {
				registryLimit = v.LimitBytes
			}
		}
	}
	return repoLimit, registryLimit, nil
}

// storedBytes returns the region's stored bytes: a read at most
// storedFigureAge old plus what this node's pushes added since.
func (r *Region) storedBytes(ctx context.Context) (int64, error) {
	q := &r.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.storedAt.IsZero() || time.Since(q.storedAt) > storedFigureAge {
		n, err := r.db.StoredBytes(ctx)
		if err != nil {
			return 0, fmt.Errorf("stored bytes: %w", err)
		}
		q.stored, q.storedAt, q.storedSince = n, time.Now(), 0
	}
	return q.stored + q.storedSince, nil
}

// pushedBytes counts bytes a push of this node added, until the next
// read of the stored figure.
func (r *Region) pushedBytes(n int64) {
	if n <= 0 {
		return
	}
	r.quotas.mu.Lock()
	r.quotas.storedSince += n
	r.quotas.mu.Unlock()
}

// checkQuota refuses, with DENIED naming the limit, a client's push that
// adds bytes to repo (in tx, under repo's lock) and would take repo or
// the registry over its quota in this region. added reports what the
// push adds (0 when no quota applies: nothing was read).
func (r *Region) checkQuota(ctx context.Context, tx *meta.Tx, repo string, added func() (int64, error)) (int64, error) {
	repoLimit, registryLimit, err := r.quotaLimits(ctx, repo)
	if err != nil || (repoLimit == 0 && registryLimit == 0) {
		return 0, err
	}
	adding, err := added()
	if err != nil || adding <= 0 {
		return 0, err
	}
	var uses []quotaUse
	if repoLimit > 0 {
		used, err := tx.RepoBytes(ctx, repo)
		if err != nil {
			return 0, fmt.Errorf("quota of %s: %w", repo, err)
		}
		uses = append(uses, quotaUse{Scope: repo, Limit: repoLimit, Used: used})
	}
	if registryLimit > 0 {
		used, err := r.storedBytes(ctx)
		if err != nil {
			return 0, err
		}
		uses = append(uses, quotaUse{Scope: RegistryScope, Limit: registryLimit, Used: used})
	}
	if u, over := crossed(uses, adding); over {
		return 0, r.overQuota(u, adding)
	}
	return adding, nil
}

// overQuota is the DENIED error of a push of adding bytes refused by u.
func (r *Region) overQuota(u quotaUse, adding int64) error {
	what, flag := "repository "+u.Scope, "--repository "+u.Scope
	if u.Scope == RegistryScope {
		what, flag = "the registry", "(the registry's)"
	}
	return ocierr.Denied.WithDetail(
		fmt.Sprintf("quota exceeded: %s holds %s in region %s and this push adds %s, over its limit of %s; delete content or raise the limit (georeg config quota update %s --limit ...)",
			what, humanize.IBytes(uint64(max(u.Used, 0))), r.cfg.Name, humanize.IBytes(uint64(adding)), humanize.IBytes(uint64(u.Limit)), flag),
		map[string]string{"quota": u.Scope, "limitBytes": strconv.FormatInt(u.Limit, 10),
			"usedBytes": strconv.FormatInt(u.Used, 10), "addingBytes": strconv.FormatInt(adding, 10), "region": r.cfg.Name})
}

// blobAdds is what linking blob d of size bytes in repo adds to repo:
// size, unless repo links it already.
func blobAdds(ctx context.Context, tx *meta.Tx, repo string, d digest.Digest, size int64) func() (int64, error) {
	return func() (int64, error) {
		_, err := tx.BlobLinkVersion(ctx, repo, d)
		if isNotFound(err) {
			return size, nil
		}
		return 0, err
	}
}

// manifestAdds is what storing manifest d of size bytes in repo adds: size,
// unless repo holds it live already.
func manifestAdds(ctx context.Context, tx *meta.Tx, repo string, d digest.Digest, size int64) func() (int64, error) {
	return func() (int64, error) {
		_, deleted, err := tx.ManifestVersion(ctx, repo, d)
		if isNotFound(err) || (err == nil && deleted) {
			return size, nil
		}
		return 0, err
	}
}

// SetQuota sets scope's quota (a repository, or RegistryScope).
func (r *Region) SetQuota(ctx context.Context, scope string, q Quota) (hlc.Version, error) {
	if err := ValidateQuotaScope(scope); err != nil {
		return hlc.Version{}, ocierr.NameInvalid.Withf("%v", err)
	}
	if err := q.Validate(); err != nil {
		return hlc.Version{}, ocierr.RequestInvalid.Withf("quota of %s: %v", scope, err)
	}
	value, _ := json.Marshal(q)
	return r.PutSetting(ctx, QuotaKind, scope, value)
}

// DeleteQuota removes scope's quota; NAME_UNKNOWN when it has none.
func (r *Region) DeleteQuota(ctx context.Context, scope string) (hlc.Version, error) {
	if err := ValidateQuotaScope(scope); err != nil {
		return hlc.Version{}, ocierr.NameInvalid.Withf("%v", err)
	}
	return r.DeleteSetting(ctx, QuotaKind, scope)
}

// Quotas lists every quota with what counts against it in this region
// now (read exactly, not from the node's figures).
func (r *Region) Quotas(ctx context.Context) ([]QuotaView, error) {
	ss, err := r.db.Settings(ctx, QuotaKind, false)
	if err != nil {
		return nil, err
	}
	out := []QuotaView{}
	for _, s := range ss {
		var q Quota
		if err := json.Unmarshal(s.Value, &q); err != nil {
			return nil, fmt.Errorf("quota %s: %w", s.Name, err)
		}
		v := QuotaView{Scope: s.Name, LimitBytes: q.LimitBytes, Region: r.cfg.Name}
		if s.Name == RegistryScope {
			v.UsedBytes, err = r.db.StoredBytes(ctx)
		} else {
			var u meta.RepoUsage
			u, err = r.db.RepoUsage(ctx, s.Name)
			v.UsedBytes = u.LogicalBytes + u.ManifestBytes
		}
		if err != nil {
			return nil, fmt.Errorf("quota %s: %w", s.Name, err)
		}
		out = append(out, v)
	}
	return out, nil
}
