package auth

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/georeg/georeg/internal/oci"
)

// Token actions on a repository, as clients ask for them in a scope
// ("repository:app:pull,push") and as tokens grant them.
const (
	ActionPull          = "pull"
	ActionPush          = "push"
	ActionDelete        = "delete"
	ActionMetadataRead  = "metadata_read"
	ActionMetadataWrite = "metadata_write"
)

// Scope is one resource and the actions asked for or granted on it, the
// "access" entry of a Docker registry token.
type Scope struct {
	Type    string   `json:"type"` // repository or registry
	Name    string   `json:"name"` // a repository, or "catalog"
	Actions []string `json:"actions"`
}

func (s Scope) String() string { return s.Type + ":" + s.Name + ":" + strings.Join(s.Actions, ",") }

var actionRegexp = regexp.MustCompile(`^[a-z*][a-z_]{0,31}$`)

// maxScopes bounds the scopes one token request may ask for.
const maxScopes = 64

// ParseScopes reads the scope parameters of a token request: each is
// "type:name:action[,action...]", and one parameter may hold several
// separated by spaces (OAuth2). An unknown action is kept (it is never
// granted); a malformed scope is an error that says why.
func ParseScopes(params []string) ([]Scope, error) {
	var out []Scope
	for _, p := range params {
		for _, s := range strings.Fields(p) {
			if len(out) == maxScopes {
				return nil, fmt.Errorf("more than %d scopes in one request", maxScopes)
			}
			sc, err := ParseScope(s)
			if err != nil {
				return nil, err
			}
			out = append(out, sc)
		}
	}
	return out, nil
}

// ParseScope reads one "type:name:actions" scope. The name may hold a
// registry host's port ("repository:host:5000/app:pull" is not valid: a
// name has no host part here), so type is before the first ':' and
// actions after the last.
func ParseScope(s string) (Scope, error) {
	first, last := strings.Index(s, ":"), strings.LastIndex(s, ":")
	if first < 0 || first == last {
		return Scope{}, fmt.Errorf("scope %q: want type:name:actions", s)
	}
	sc := Scope{Type: s[:first], Name: s[first+1 : last]}
	for _, a := range strings.Split(s[last+1:], ",") {
		if !actionRegexp.MatchString(a) {
			return Scope{}, fmt.Errorf("scope %q: action %q", s, a)
		}
		if !slices.Contains(sc.Actions, a) {
			sc.Actions = append(sc.Actions, a)
		}
	}
	switch sc.Type {
	case "repository":
		if err := oci.ValidateRepository(sc.Name); err != nil {
			return Scope{}, fmt.Errorf("scope %q: %v", s, err)
		}
	case "registry":
		if sc.Name != "catalog" {
			return Scope{}, fmt.Errorf("scope %q: the only registry resource is catalog", s)
		}
	default:
		return Scope{}, fmt.Errorf("scope %q: type %q is not repository or registry", s, sc.Type)
	}
	return sc, nil
}

// Scope-map actions, as ACR names them: "repositories/<repo>/<action>".
const (
	MapContentRead   = "content/read"
	MapContentWrite  = "content/write"
	MapContentDelete = "content/delete"
	MapMetadataRead  = "metadata/read"
	MapMetadataWrite = "metadata/write"
)

// mapActions maps a scope-map action to the token action it grants.
var mapActions = map[string]string{
	MapContentRead: ActionPull, MapContentWrite: ActionPush, MapContentDelete: ActionDelete,
	MapMetadataRead: ActionMetadataRead, MapMetadataWrite: ActionMetadataWrite,
}

// Rule is one line of a scope map: a repository pattern ('*' for any run
// of characters, '/' included) and the actions it allows there.
type Rule struct {
	Repository string `json:"repository"`
	Action     string `json:"action"` // a scope-map action, e.g. content/read
}

var patternRegexp = regexp.MustCompile(`^[a-z0-9._/*-]{1,255}$`)

// ParseRule reads "repositories/<pattern>/<area>/<verb>".
func ParseRule(s string) (Rule, error) {
	rest, ok := strings.CutPrefix(s, "repositories/")
	if !ok {
		return Rule{}, fmt.Errorf("scope-map action %q: want repositories/<repository pattern>/<action>", s)
	}
	i := strings.LastIndex(rest, "/")
	if i < 0 {
		return Rule{}, fmt.Errorf("scope-map action %q: want repositories/<repository pattern>/<action>", s)
	}
	j := strings.LastIndex(rest[:i], "/")
	if j < 0 {
		return Rule{}, fmt.Errorf("scope-map action %q: want repositories/<repository pattern>/<action>", s)
	}
	r := Rule{Repository: rest[:j], Action: rest[j+1:]}
	if _, ok := mapActions[r.Action]; !ok {
		return Rule{}, fmt.Errorf("scope-map action %q: %q is not one of content/read, content/write, content/delete, metadata/read, metadata/write", s, r.Action)
	}
	if !patternRegexp.MatchString(r.Repository) {
		return Rule{}, fmt.Errorf("scope-map action %q: repository pattern %q may hold lower-case letters, digits, '.', '_', '-', '/' and '*'", s, r.Repository)
	}
	return r, nil
}

func (r Rule) String() string { return "repositories/" + r.Repository + "/" + r.Action }

// allows reports whether the rule grants token action on repo.
func (r Rule) allows(repo, action string) bool {
	return mapActions[r.Action] == action && oci.MatchPattern(r.Repository, repo)
}
