// Package cache is the artifact cache: cache rules map repositories of
// this registry to repositories of upstream registries (Docker Hub,
// ghcr.io, quay.io, any OCI registry), and a pull of an image a cached
// repository lacks fetches it from the upstream, stores it (verified by
// digest, complete, as an import would) and serves it. Rules and
// credential sets are registry settings: any region changes them, every
// region applies them. What one region fetched is stored as a push there,
// so it replicates to the others: N regions cost one download.
package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/georeg/georeg/internal/oci"
)

// Setting kinds.
const (
	RuleKind          = "cache-rule"
	CredentialSetKind = "credential-set"
)

// Rule maps Target (a repository, or a prefix ending in /*) to Source (an
// upstream repository, or a prefix ending in /* when Target has one).
type Rule struct {
	Source        string `json:"source"`                  // registry/repo or registry/prefix/*
	Target        string `json:"target"`                  // repo or prefix/*
	CredentialSet string `json:"credentialSet,omitempty"` // "" for anonymous pulls
	// Revalidate is how often a cached tag is checked against the
	// upstream when pulled (a Go duration; "" for DefaultRevalidate).
	Revalidate string `json:"revalidate,omitempty"`
	// EvictUntouched evicts a cached image no region pulled for this long
	// (a Go duration; "" keeps cached images until deleted).
	EvictUntouched string `json:"evictUntouched,omitempty"`
	// Replicate is where a cached image's bytes go: ReplicateAll ("" too)
	// every region, as a push; ReplicateOnDemand only the region that
	// fetched it and those whose clients pull it (its manifests and tags
	// replicate everywhere, its blobs are fetched by a region when first
	// pulled there).
	Replicate string    `json:"replicate,omitempty"`
	Created   time.Time `json:"created"`
}

// Rule.Replicate values.
const (
	ReplicateAll      = "all"
	ReplicateOnDemand = "on-demand"
)

// OnDemand reports whether r's images' bytes are held only where pulled.
func (r Rule) OnDemand() bool { return r.Replicate == ReplicateOnDemand }

// Replication names r's Replicate, "all" when unset.
func (r Rule) Replication() string {
	if r.Replicate == "" {
		return ReplicateAll
	}
	return r.Replicate
}

// EvictAfter is how long a cached image of r may go unpulled in every
// region before it is evicted; 0: never.
func (r Rule) EvictAfter() time.Duration {
	d, err := time.ParseDuration(r.EvictUntouched)
	if err != nil || d <= 0 {
		return 0
	}
	return d
}

// DefaultRevalidate is a rule's revalidation interval unless it sets one.
const DefaultRevalidate = time.Hour

// Interval is how often a cached tag of r is checked upstream.
func (r Rule) Interval() time.Duration {
	d, err := time.ParseDuration(r.Revalidate)
	if err != nil || d <= 0 {
		return DefaultRevalidate
	}
	return d
}

// CredentialSet is how to log in to an upstream. Password is a secret:
// listings and exports leave it out.
type CredentialSet struct {
	LoginServer string    `json:"loginServer"`
	Username    string    `json:"username"`
	Password    string    `json:"password,omitempty"`
	Created     time.Time `json:"created"`
}

var nameRegexp = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{2,49}$`)

// ValidateName checks a rule's or credential set's name.
func ValidateName(kind, n string) error {
	if !nameRegexp.MatchString(n) {
		return fmt.Errorf("%s name %q: use 3 to 50 letters, digits, '-' and '_', starting with a letter or digit", kind, n)
	}
	return nil
}

// Validate checks a rule: a source of the form registry/repository with a
// host, a target that is a valid repository name, both wildcards or
// neither.
func (r Rule) Validate() error {
	srcWild, dstWild := strings.HasSuffix(r.Source, "/*"), strings.HasSuffix(r.Target, "/*")
	if srcWild != dstWild {
		return fmt.Errorf("source %q and target %q: both end in /* or neither does", r.Source, r.Target)
	}
	// http:// marks an upstream served without TLS (a registry inside
	// the network); otherwise HTTPS.
	src := strings.TrimSuffix(strings.TrimPrefix(r.Source, "http://"), "/*")
	if srcWild {
		src += "/x" // a repository under the prefix
	}
	host, _, _ := strings.Cut(src, "/")
	explicit := strings.ContainsAny(host, ".:") || host == "localhost"
	if _, err := name.NewRepository(src, name.StrictValidation); err != nil || !explicit || !strings.Contains(src, "/") {
		return fmt.Errorf("source %q: give registry/repository, such as docker.io/library/nginx or ghcr.io/org/*", r.Source)
	}
	if r.Revalidate != "" {
		d, err := time.ParseDuration(r.Revalidate)
		if err != nil || d < time.Second || d > 30*24*time.Hour {
			return fmt.Errorf("revalidate %q: give a duration from 1s to 720h, such as 5m or 1h", r.Revalidate)
		}
	}
	if r.EvictUntouched != "" {
		d, err := time.ParseDuration(r.EvictUntouched)
		if err != nil || d < time.Second || d > 5*365*24*time.Hour {
			return fmt.Errorf("evictUntouched %q: give a duration from 1s to 43800h (5 years), such as 720h for 30 days", r.EvictUntouched)
		}
	}
	if r.Replicate != "" && r.Replicate != ReplicateAll && r.Replicate != ReplicateOnDemand {
		return fmt.Errorf("replicate %q: give all (every region holds a cached image) or on-demand (only the regions that pull it)", r.Replicate)
	}
	dst := strings.TrimSuffix(r.Target, "/*")
	if dstWild {
		dst += "/x"
	}
	if err := oci.ValidateRepository(dst); err != nil {
		return fmt.Errorf("target %q: %v", r.Target, err)
	}
	return nil
}

// Validate checks a credential set.
func (c CredentialSet) Validate() error {
	if c.LoginServer == "" || strings.ContainsAny(c.LoginServer, "/ ") {
		return fmt.Errorf("login server %q: give a host name such as docker.io or ghcr.io", c.LoginServer)
	}
	if c.Username == "" || c.Password == "" {
		return errors.New("a credential set needs a username and a password")
	}
	return nil
}

// Match is the rule a repository falls under, and the upstream
// repository it maps to.
type Match struct {
	Rule     string
	Upstream string // registry/repository
	Cred     string
	Interval time.Duration // how often a cached tag is checked upstream
	OnDemand bool          // its images' bytes are held only where pulled
}

// Matched returns the rule repo falls under: an exact target first, then
// the wildcard rule with the longest prefix (ties by rule name); ok false
// when none. Pure.
func Matched(rules map[string]Rule, repo string) (Match, bool) {
	var best Match
	bestLen, found := -1, false
	for n, r := range rules {
		var up string
		switch {
		case r.Target == repo:
			up = r.Source
			if bestLen == 1<<30 && n > best.Rule {
				continue
			}
			best, bestLen, found = Match{Rule: n, Upstream: up, Cred: r.CredentialSet, Interval: r.Interval(), OnDemand: r.OnDemand()}, 1<<30, true
			continue
		case strings.HasSuffix(r.Target, "/*"):
			prefix := strings.TrimSuffix(r.Target, "*")
			rest, ok := strings.CutPrefix(repo, prefix)
			if !ok || rest == "" {
				continue
			}
			up = strings.TrimSuffix(r.Source, "*") + rest
			if len(prefix) < bestLen || (len(prefix) == bestLen && n > best.Rule) {
				continue
			}
			best, bestLen, found = Match{Rule: n, Upstream: up, Cred: r.CredentialSet, Interval: r.Interval(), OnDemand: r.OnDemand()}, len(prefix), true
		}
	}
	return best, found
}

// dockerHub are the names Docker Hub's registry goes by.
var dockerHub = map[string]bool{"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true}

// Mirrored returns the repository of this registry that a mirror request
// for repository repo of upstream registry ns (containerd's ?ns=) maps
// to: the rule whose source names that registry and repository, exact
// first, then the longest wildcard prefix (ties by rule name). Pure.
func Mirrored(rules map[string]Rule, ns, repo string) (string, bool) {
	best, bestLen, bestRule, found := "", -1, "", false
	for n, r := range rules {
		host, path, ok := strings.Cut(strings.TrimPrefix(r.Source, "http://"), "/")
		if !ok || !(host == ns || dockerHub[host] && dockerHub[ns]) {
			continue
		}
		var target string
		var l int
		switch {
		case path == repo && !strings.HasSuffix(r.Target, "/*"):
			target, l = r.Target, 1<<30
		case path == "*" || strings.HasSuffix(path, "/*"):
			prefix := strings.TrimSuffix(path, "*")
			rest, ok := strings.CutPrefix(repo, prefix)
			if !ok || rest == "" {
				continue
			}
			target, l = strings.TrimSuffix(r.Target, "*")+rest, len(prefix)
		default:
			continue
		}
		if l < bestLen || (l == bestLen && n > bestRule) {
			continue
		}
		best, bestLen, bestRule, found = target, l, n, true
	}
	return best, found
}

// Fetcher is the region that fetches image key (repository|reference)
// from its upstream for the whole registry: of the Ready regions, the
// one rendezvous hashing ranks first for key, so every region picks the
// same one while they agree on who is Ready, and an image's fetches
// spread across the regions. "" when there are none. Pure.
func Fetcher(regions []string, key string) string {
	best, bestScore := "", uint64(0)
	for _, r := range regions {
		// SHA-256, not FNV: FNV's last bytes barely reach its high bits,
		// so tags that differ only at their end (t1, t2, ...) ranked the
		// same region first, every one.
		sum := sha256.Sum256([]byte(r + "\x00" + key))
		if s := binary.BigEndian.Uint64(sum[:8]); best == "" || s > bestScore || (s == bestScore && r < best) {
			best, bestScore = r, s
		}
	}
	return best
}
