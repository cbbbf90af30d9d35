package webhook

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/georeg/georeg/internal/oci"
)

// Scope filters the events a webhook receives by repository and tag, as
// ACR's --scope: "repo:tag" where either side may use '*' for any run of
// characters ('/' included, so "team/*:*" covers every repository under
// team/). "repo" alone means "repo:latest", as in ACR; "" (no scope) means
// every event. An event without a tag (a push by digest, a manifest
// deleted by digest) matches only a scope whose tag part is "*".
type Scope struct {
	Repo, Tag string // patterns; both empty for "every event"
}

var (
	scopeRepoRegexp = regexp.MustCompile(`^[a-z0-9._/*-]{1,255}$`)
	scopeTagRegexp  = regexp.MustCompile(`^[a-zA-Z0-9_.*-]{1,128}$`)
)

// ParseScope reads a scope; an error says what is wrong with it.
func ParseScope(s string) (Scope, error) {
	if s == "" {
		return Scope{}, nil
	}
	repo, tag, ok := strings.Cut(s, ":")
	if !ok {
		tag = "latest"
	}
	if !scopeRepoRegexp.MatchString(repo) {
		return Scope{}, fmt.Errorf("scope %q: the repository part %q may hold lower-case letters, digits, '.', '_', '-', '/' and '*'", s, repo)
	}
	if !scopeTagRegexp.MatchString(tag) {
		return Scope{}, fmt.Errorf("scope %q: the tag part %q may hold letters, digits, '.', '_', '-' and '*' (one ':' separates it)", s, tag)
	}
	return Scope{Repo: repo, Tag: tag}, nil
}

// Matches reports whether an event on repo (and tag, "" for none) is in
// the scope.
func (s Scope) Matches(repo, tag string) bool {
	if s.Repo == "" {
		return true
	}
	if !oci.MatchPattern(s.Repo, repo) {
		return false
	}
	if tag == "" {
		return s.Tag == "*"
	}
	return oci.MatchPattern(s.Tag, tag)
}
