package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/georeg/georeg/internal/ocierr"
)

// TokenPath is where a region serves its token endpoint.
const TokenPath = "/oauth2/token"

// tokenAnswer is the token endpoint's JSON: Docker's (token, expires_in,
// issued_at) and OAuth2's (access_token, refresh_token, scope).
type tokenAnswer struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	TokenType    string `json:"token_type"`
}

// TokenHandler serves TokenPath: GET with basic auth (or none, for
// anonymous pull), as docker asks; POST with an OAuth2 form, grant_type
// password or refresh_token, as containerd asks.
func (s *Service) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ans, err := s.token(r)
		if err != nil {
			oe, _ := ocierr.From(err)
			if oe.Code == ocierr.Unauthorized && r.Method == http.MethodGet {
				// Docker's basic-auth GET; an OAuth2 form POST (containerd,
				// the dashboard) gets no browser prompt.
				w.Header().Set("WWW-Authenticate", `Basic realm="georeg"`)
			}
			ocierr.Write(w, r, oe)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(ans)
	})
}

func (s *Service) token(r *http.Request) (*tokenAnswer, error) {
	if !s.cfg.Enabled {
		return nil, ocierr.Unsupported.Withf("auth is off in this registry: no token is needed")
	}
	ctx := r.Context()
	var service string
	var scopes []string
	var p *Principal
	offline := false
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		service, scopes, offline = q.Get("service"), q["scope"], q.Get("offline_token") == "true"
		if user, pass, ok := r.BasicAuth(); ok {
			var err error
			if p, err = s.login(r, user, pass, "basic auth"); err != nil {
				return nil, err
			}
			s.recordLogin(ctx, user, "ok", "basic auth; scope "+strings.Join(scopes, " "))
		}
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			return nil, ocierr.RequestInvalid.Withf("token request form: %v", err)
		}
		service, scopes = r.PostForm.Get("service"), r.PostForm["scope"]
		switch gt := r.PostForm.Get("grant_type"); gt {
		case "password":
			var err error
			user := r.PostForm.Get("username")
			if p, err = s.login(r, user, r.PostForm.Get("password"), "password grant"); err != nil {
				return nil, err
			}
			s.recordLogin(ctx, user, "ok", "password grant")
			offline = true
		case "refresh_token":
			c, err := s.Verify(ctx, r.PostForm.Get("refresh_token"))
			if err != nil || !c.Refresh {
				return nil, ocierr.Unauthorized.Withf("the refresh token is not valid here; log in again")
			}
			if p, err = s.current(ctx, c.Kind, c.Subject); err != nil {
				return nil, ocierr.Unauthorized.Withf("%v", err)
			}
		default:
			return nil, ocierr.RequestInvalid.Withf("grant_type %q: use password or refresh_token", gt)
		}
	default:
		return nil, ocierr.Unsupported.Withf("the token endpoint takes GET (basic auth) or POST (OAuth2 form)")
	}
	if service != "" && service != s.cfg.Service {
		return nil, ocierr.RequestInvalid.Withf("service %q: this registry issues tokens for %q", service, s.cfg.Service)
	}
	want, err := ParseScopes(scopes)
	if err != nil {
		return nil, ocierr.RequestInvalid.Withf("%v", err)
	}
	var granted []Scope
	switch {
	case p != nil:
		granted = p.Grant(want)
	case s.switches(ctx).anonymousPull:
		p = &Principal{Kind: "anonymous", Rules: []Rule{{Repository: "*", Action: MapContentRead}}}
		granted = p.Grant(want)
	default:
		p = &Principal{Kind: "anonymous"} // a token that grants nothing: /v2 asks for credentials
	}
	raw, exp, err := s.Issue(ctx, p, granted, false)
	if err != nil {
		return nil, err
	}
	now := s.now()
	ans := &tokenAnswer{Token: raw, AccessToken: raw, ExpiresIn: int(exp.Sub(now).Seconds()),
		IssuedAt: now.UTC().Format(time.RFC3339), TokenType: "Bearer"}
	var names []string
	for _, g := range granted {
		names = append(names, g.String())
	}
	ans.Scope = strings.Join(names, " ")
	if offline && p.Kind != "anonymous" {
		if ans.RefreshToken, _, err = s.Issue(ctx, p, nil, true); err != nil {
			return nil, err
		}
	}
	return ans, nil
}

// Need is what a /v2 request needs: one of Actions on repository Repo,
// or the catalog.
type Need struct {
	Repo    string
	Actions []string // any one suffices
	Catalog bool
	Base    bool // GET /v2/: any valid token
}

func (n Need) scope() string {
	switch {
	case n.Catalog:
		return "registry:catalog:*"
	case n.Repo != "":
		actions := n.Actions
		if len(actions) == 1 && actions[0] == ActionPush {
			actions = []string{ActionPull, ActionPush} // what docker asks for a push
		}
		return "repository:" + n.Repo + ":" + strings.Join(actions, ",")
	}
	return ""
}

// pullOnly reports a need anonymous pull covers.
func (n Need) pullOnly() bool {
	return n.Base || (n.Repo != "" && len(n.Actions) > 0 && n.Actions[0] == ActionPull)
}

// Check decides a /v2 request and returns who made it ("" for
// anonymous): nil to serve it; UNAUTHORIZED (401, with
// the Bearer challenge set on w) when it needs a token or a token with
// more scope; DENIED (403) when the credential behind the token may not do
// it at all.
func (s *Service) Check(w http.ResponseWriter, r *http.Request, need Need) (string, error) {
	if !s.cfg.Enabled {
		return "", nil
	}
	ctx := r.Context()
	raw, ok := bearer(r)
	if !ok {
		if need.pullOnly() && s.switches(ctx).anonymousPull {
			return "", nil
		}
		s.challenge(w, r, need, "")
		return "", ocierr.Unauthorized.Withf("authentication required: get a token from %s (docker login, crane auth login, regctl registry login)", s.realm(r))
	}
	c, err := s.Verify(ctx, raw)
	if err != nil {
		s.challenge(w, r, need, "invalid_token")
		return "", ocierr.Unauthorized.Withf("%v", err)
	}
	if c.Refresh {
		s.challenge(w, r, need, "invalid_token")
		return "", ocierr.Unauthorized.Withf("a refresh token cannot be used on /v2; trade it for an access token at %s", s.realm(r))
	}
	if !s.alive(ctx, c) {
		s.challenge(w, r, need, "invalid_token")
		if c.Kind == "anonymous" {
			return "", ocierr.Unauthorized.Withf("anonymous pull was turned off since this token was issued; log in")
		}
		return "", ocierr.Unauthorized.Withf("%s %q was disabled, deleted or has expired since this token was issued; log in again", c.Kind, c.Subject)
	}
	actor := c.Subject
	if c.Admin || need.Base || c.grants(need) {
		return actor, nil
	}
	if need.pullOnly() && s.switches(ctx).anonymousPull {
		return actor, nil
	}
	// Would the credential get it with a token for this scope? Then the
	// client just needs a new token; otherwise it may not.
	if c.Kind != "anonymous" {
		if p, err := s.current(ctx, c.Kind, c.Subject); err == nil {
			sc := Scope{Type: "repository", Name: need.Repo, Actions: need.Actions}
			if need.Catalog {
				sc = Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}}
			}
			if len(p.Grant([]Scope{sc})) == 0 {
				return actor, ocierr.Denied.Withf("%s %q may not %s %s; an admin can extend its scope map", c.Kind, c.Subject, strings.Join(need.Actions, " or "), need.what())
			}
		}
	}
	if c.Kind == "anonymous" {
		s.challenge(w, r, need, "")
		return "", ocierr.Unauthorized.Withf("authentication required for %s: log in (docker login, crane auth login, regctl registry login, georeg login)", need.what())
	}
	s.challenge(w, r, need, "insufficient_scope")
	return actor, ocierr.Unauthorized.Withf("the token does not grant %s; get one for that scope from %s", need.scope(), s.realm(r))
}

func (n Need) what() string {
	if n.Catalog {
		return "the catalog"
	}
	return "repository " + n.Repo
}

// grants reports whether the token's access covers need.
func (c *Claims) grants(need Need) bool {
	for _, a := range c.Access {
		switch {
		case need.Catalog && a.Type == "registry" && a.Name == "catalog":
			return true
		case a.Type == "repository" && a.Name == need.Repo:
			for _, want := range need.Actions {
				for _, got := range a.Actions {
					if got == want {
						return true
					}
				}
			}
		}
	}
	return false
}

// Admin decides a management API request: a user's basic auth, or a token
// issued to a user. UNAUTHORIZED without credentials, DENIED for a
// repository-scoped token. It returns who the request authenticated as.
func (s *Service) Admin(w http.ResponseWriter, r *http.Request) (string, error) {
	if !s.cfg.Enabled {
		return "", nil
	}
	ctx := r.Context()
	if user, pass, ok := r.BasicAuth(); ok {
		p, err := s.login(r, user, pass, "management API")
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="georeg"`)
			return "", err
		}
		if !p.Admin {
			return p.Name, ocierr.Denied.Withf("token %q is repository-scoped; the management API needs an admin user", p.Name)
		}
		return p.Name, nil
	}
	if raw, ok := bearer(r); ok {
		c, err := s.Verify(ctx, raw)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="georeg"`)
			return "", ocierr.Unauthorized.Withf("%v", err)
		}
		if c.Admin && s.alive(ctx, c) {
			return c.Subject, nil
		}
		if c.Admin {
			w.Header().Set("WWW-Authenticate", `Basic realm="georeg"`)
			return "", ocierr.Unauthorized.Withf("user %q was disabled or deleted since this token was issued; log in again", c.Subject)
		}
		return c.Subject, ocierr.Denied.Withf("%s %q is not an admin; the management API needs an admin user", c.Kind, c.Subject)
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="georeg"`)
	return "", ocierr.Unauthorized.Withf("the management API needs an admin user: georeg login, or basic auth")
}

// Repository decides a management API request about one repository's
// metadata (show-tags, show-manifests, locks, delete): an admin, or a
// token whose scope map grants action (metadata_read, metadata_write or
// delete) on repo, by basic auth with the token's password or by a
// registry token granting it. UNAUTHORIZED without credentials, DENIED
// when the credential may not.
func (s *Service) Repository(w http.ResponseWriter, r *http.Request, repo, action string) (string, error) {
	if !s.cfg.Enabled {
		return "", nil
	}
	ctx := r.Context()
	sc := Scope{Type: "repository", Name: repo, Actions: []string{action}}
	if user, pass, ok := r.BasicAuth(); ok {
		p, err := s.login(r, user, pass, "management API")
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="georeg"`)
			return "", err
		}
		if len(p.Grant([]Scope{sc})) == 0 {
			return p.Name, ocierr.Denied.Withf("%s %q may not %s repository %s; an admin can extend its scope map", p.Kind, p.Name, action, repo)
		}
		return p.Name, nil
	}
	if raw, ok := bearer(r); ok {
		c, err := s.Verify(ctx, raw)
		if err != nil || c.Refresh || !s.alive(ctx, c) {
			w.Header().Set("WWW-Authenticate", `Basic realm="georeg"`)
			return "", ocierr.Unauthorized.Withf("the token is not valid here; log in again (georeg login)")
		}
		if c.Admin || c.grants(Need{Repo: repo, Actions: []string{action}}) {
			return c.Subject, nil
		}
		return c.Subject, ocierr.Denied.Withf("%s %q may not %s repository %s; an admin can extend its scope map", c.Kind, c.Subject, action, repo)
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="georeg"`)
	return "", ocierr.Unauthorized.Withf("credentials required: georeg login with an admin user, or a token allowed %s on %s", action, repo)
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

// realm is the token endpoint's URL for r.
func (s *Service) realm(r *http.Request) string {
	if s.cfg.Realm != "" {
		return s.cfg.Realm
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	host := r.Host
	if s.hostOK != nil && !s.hostOK(host) && s.ownHost != "" {
		// A Host that is none of the registry's names does not choose
		// where clients send their passwords.
		host = s.ownHost
	}
	return scheme + "://" + host + TokenPath
}

// SetHosts has challenges name the token endpoint at the request's Host
// only when ok says it is one of the registry's names, else at own
// (host:port of the region's endpoint). auth.realm overrides both.
func (s *Service) SetHosts(ok func(hostport string) bool, own string) {
	s.hostOK, s.ownHost = ok, own
}

func (s *Service) challenge(w http.ResponseWriter, r *http.Request, need Need, errCode string) {
	v := fmt.Sprintf(`Bearer realm=%q,service=%q`, s.realm(r), s.cfg.Service)
	if sc := need.scope(); sc != "" {
		v += fmt.Sprintf(`,scope=%q`, sc)
	}
	if errCode != "" {
		v += fmt.Sprintf(`,error=%q`, errCode)
	}
	w.Header().Set("WWW-Authenticate", v)
}
