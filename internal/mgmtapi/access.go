package mgmtapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/ocierr"
)

// Access configuration: admin users, scope maps, repository-scoped tokens
// and the registry's switches (anonymous pull, network rules). All are
// settings: any region changes them, every region applies them.
//
//	GET /_georeg/v1/users                PUT|DELETE /_georeg/v1/users/{name}
//	GET /_georeg/v1/scope-maps           GET|PUT|DELETE /_georeg/v1/scope-maps/{name}
//	GET /_georeg/v1/tokens               GET|PUT|PATCH|DELETE /_georeg/v1/tokens/{name}
//	GET|PATCH /_georeg/v1/registry       anonymousPullEnabled, networkRuleSet, outboundRules
//	GET /_georeg/v1/keys                 POST /_georeg/v1/keys/rotate
//
// Answers never carry a password hash or key; a created token's or
// user's password is in the create answer only.

func (a *API) registerAccess(mux *http.ServeMux) {
	mux.HandleFunc("GET /_georeg/v1/users", a.handle(a.listUsers))
	mux.HandleFunc("PUT /_georeg/v1/users/{name}", a.handle(a.createUser))
	mux.HandleFunc("DELETE /_georeg/v1/users/{name}", a.handle(a.deleteUser))
	mux.HandleFunc("GET /_georeg/v1/scope-maps", a.handle(a.listScopeMaps))
	mux.HandleFunc("GET /_georeg/v1/scope-maps/{name}", a.handle(a.showScopeMap))
	mux.HandleFunc("PUT /_georeg/v1/scope-maps/{name}", a.handle(a.createScopeMap))
	mux.HandleFunc("DELETE /_georeg/v1/scope-maps/{name}", a.handle(a.deleteSetting(auth.KindScopeMap)))
	mux.HandleFunc("GET /_georeg/v1/tokens", a.handle(a.listTokens))
	mux.HandleFunc("GET /_georeg/v1/tokens/{name}", a.handle(a.showToken))
	mux.HandleFunc("PUT /_georeg/v1/tokens/{name}", a.handle(a.createToken))
	mux.HandleFunc("PATCH /_georeg/v1/tokens/{name}", a.handle(a.updateToken))
	mux.HandleFunc("DELETE /_georeg/v1/tokens/{name}", a.handle(a.deleteSetting(auth.KindToken)))
	mux.HandleFunc("GET /_georeg/v1/registry", a.handle(a.showRegistry))
	mux.HandleFunc("PATCH /_georeg/v1/registry", a.handle(a.updateRegistry))
	mux.HandleFunc("GET /_georeg/v1/keys", a.handle(a.listKeys))
	mux.HandleFunc("POST /_georeg/v1/keys/rotate", a.handle(a.rotateKeys))
}

// listKeys lists the token-signing keys of every region.
func (a *API) listKeys(ctx context.Context, _ *http.Request) (any, error) {
	if a.auth == nil || !a.auth.Enabled() {
		return nil, ocierr.Unsupported.Withf("auth is off in this registry: no token is signed")
	}
	keys, err := a.auth.Keys(ctx)
	if keys == nil {
		keys = []auth.KeyInfo{}
	}
	return keys, err
}

// rotateKeys makes this region a new signing key at once and asks every
// region for one.
func (a *API) rotateKeys(ctx context.Context, r *http.Request) (any, error) {
	if a.auth == nil || !a.auth.Enabled() {
		return nil, ocierr.Unsupported.Withf("auth is off in this registry: no token is signed")
	}
	if err := a.auth.Rotate(ctx); err != nil {
		return nil, err
	}
	return a.listKeys(ctx, r)
}

// UserView is an admin user as listed.
type UserView struct {
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	Disabled bool      `json:"disabled,omitempty"`
}

// UserBody creates a user.
type UserBody struct {
	Password string `json:"password"`
}

// ScopeMapView is a scope map as shown.
type ScopeMapView struct {
	Name string `json:"name"`
	auth.ScopeMap
}

// TokenView is a token as shown: no password.
type TokenView struct {
	Name     string     `json:"name"`
	ScopeMap string     `json:"scopeMap"`
	Status   string     `json:"status"`
	Expiry   *time.Time `json:"expiry,omitempty"`
	Created  time.Time  `json:"created"`
}

// TokenBody creates or changes a token; on change, absent fields keep
// their value ("expiry": "" removes the expiry).
type TokenBody struct {
	ScopeMap *string `json:"scopeMap,omitempty"`
	Status   *string `json:"status,omitempty"`
	Expiry   *string `json:"expiry,omitempty"` // RFC 3339
}

// TokenCreated answers a token's creation with its password, once.
type TokenCreated struct {
	TokenView
	Password string `json:"password"`
}

// RegistryView is the registry's switches.
type RegistryView struct {
	AnonymousPullEnabled bool              `json:"anonymousPullEnabled"`
	NetworkRuleSet       auth.NetworkRules `json:"networkRuleSet"`
	// OutboundRules are the loopback and private ranges imports, webhooks
	// and replica endpoints may reach (internal/outbound).
	OutboundRules []string `json:"outboundRules"`
}

// RegistryBody changes the fields given.
type RegistryBody struct {
	AnonymousPullEnabled *bool              `json:"anonymousPullEnabled,omitempty"`
	NetworkRuleSet       *auth.NetworkRules `json:"networkRuleSet,omitempty"`
	OutboundRules        *[]string          `json:"outboundRules,omitempty"`
	// Force applies network rules that deny the caller's own address.
	Force bool `json:"force,omitempty"`
}

func decode(r *http.Request, out any, hint string) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return ocierr.RequestInvalid.Withf("body: %v; send %s", err, hint)
	}
	return nil
}

func (a *API) pathName(r *http.Request, kind string) (string, error) {
	name := r.PathValue("name")
	if err := auth.ValidateName(kind, name); err != nil {
		return "", ocierr.RequestInvalid.Withf("%v", err)
	}
	return name, nil
}

func (a *API) put(ctx context.Context, kind, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = a.region.PutSetting(ctx, kind, name, b)
	if a.auth != nil {
		a.auth.Forget()
	}
	return err
}

func (a *API) exists(ctx context.Context, kind, name string) error {
	if _, err := a.region.Setting(ctx, kind, name); err == nil {
		return ocierr.AlreadyExists.Withf("%s %s exists; delete it first or change it", kind, name)
	}
	return nil
}

func (a *API) listUsers(ctx context.Context, _ *http.Request) (any, error) {
	settings, err := a.region.Settings(ctx, auth.KindUser)
	if err != nil {
		return nil, err
	}
	out := []UserView{}
	for _, s := range settings {
		var u auth.User
		if json.Unmarshal(s.Value, &u) == nil {
			out = append(out, UserView{Name: s.Name, Created: u.Created, Disabled: u.Disabled})
		}
	}
	return out, nil
}

func (a *API) createUser(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.pathName(r, auth.KindUser)
	if err != nil {
		return nil, err
	}
	var body UserBody
	if err := decode(r, &body, `{"password": "..."}`); err != nil {
		return nil, err
	}
	if err := a.exists(ctx, auth.KindUser, name); err != nil {
		return nil, err
	}
	// One namespace for logins: a user named as a token would shadow it.
	if err := a.exists(ctx, auth.KindToken, name); err != nil {
		return nil, err
	}
	hash, err := auth.HashPassword(body.Password)
	if err != nil {
		return nil, ocierr.RequestInvalid.Withf("password: %v", err)
	}
	u := auth.User{PasswordHash: hash, Created: time.Now().UTC()}
	if err := a.put(ctx, auth.KindUser, name, u); err != nil {
		return nil, err
	}
	return UserView{Name: name, Created: u.Created}, nil
}

func (a *API) deleteUser(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.pathName(r, auth.KindUser)
	if err != nil {
		return nil, err
	}
	users, err := a.region.Settings(ctx, auth.KindUser)
	if err != nil {
		return nil, err
	}
	if len(users) == 1 && users[0].Name == name {
		return nil, ocierr.Denied.Withf("%s is the last admin user; create another before deleting it", name)
	}
	if _, err := a.region.DeleteSetting(ctx, auth.KindUser, name); err != nil {
		return nil, err
	}
	return map[string]string{"deleted": name}, nil
}

func (a *API) deleteSetting(kind string) func(ctx context.Context, r *http.Request) (any, error) {
	return func(ctx context.Context, r *http.Request) (any, error) {
		name, err := a.pathName(r, kind)
		if err != nil {
			return nil, err
		}
		if _, err := a.region.DeleteSetting(ctx, kind, name); err != nil {
			return nil, err
		}
		return map[string]string{"deleted": name}, nil
	}
}

func (a *API) listScopeMaps(ctx context.Context, _ *http.Request) (any, error) {
	settings, err := a.region.Settings(ctx, auth.KindScopeMap)
	if err != nil {
		return nil, err
	}
	out := []ScopeMapView{}
	for _, s := range settings {
		var m auth.ScopeMap
		if json.Unmarshal(s.Value, &m) == nil {
			out = append(out, ScopeMapView{Name: s.Name, ScopeMap: m})
		}
	}
	return out, nil
}

func (a *API) showScopeMap(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.pathName(r, auth.KindScopeMap)
	if err != nil {
		return nil, err
	}
	s, err := a.region.Setting(ctx, auth.KindScopeMap, name)
	if err != nil {
		return nil, err
	}
	var m auth.ScopeMap
	return ScopeMapView{Name: name, ScopeMap: m}, json.Unmarshal(s.Value, &m)
}

func (a *API) createScopeMap(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.pathName(r, auth.KindScopeMap)
	if err != nil {
		return nil, err
	}
	var body auth.ScopeMap
	if err := decode(r, &body, `{"actions": ["repositories/app/content/read", ...], "description": "..."}`); err != nil {
		return nil, err
	}
	if len(body.Actions) == 0 {
		return nil, ocierr.RequestInvalid.Withf("actions: give at least one repositories/<pattern>/<action>")
	}
	var bad []string
	for _, act := range body.Actions {
		if _, err := auth.ParseRule(act); err != nil {
			bad = append(bad, err.Error())
		}
	}
	if len(bad) > 0 {
		return nil, ocierr.RequestInvalid.Withf("%s", strings.Join(bad, "; "))
	}
	if err := a.exists(ctx, auth.KindScopeMap, name); err != nil {
		return nil, err
	}
	body.Created = time.Now().UTC()
	if err := a.put(ctx, auth.KindScopeMap, name, body); err != nil {
		return nil, err
	}
	return ScopeMapView{Name: name, ScopeMap: body}, nil
}

func tokenView(name string, t auth.Token) TokenView {
	return TokenView{Name: name, ScopeMap: t.ScopeMap, Status: t.Status, Expiry: t.Expiry, Created: t.Created}
}

func (a *API) listTokens(ctx context.Context, r *http.Request) (any, error) {
	settings, err := a.region.Settings(ctx, auth.KindToken)
	if err != nil {
		return nil, err
	}
	out := []TokenView{}
	for _, s := range settings {
		var t auth.Token
		if json.Unmarshal(s.Value, &t) == nil {
			out = append(out, tokenView(s.Name, t))
		}
	}
	return pageOf(r, out)
}

func (a *API) token(ctx context.Context, r *http.Request) (string, *auth.Token, error) {
	name, err := a.pathName(r, auth.KindToken)
	if err != nil {
		return "", nil, err
	}
	s, err := a.region.Setting(ctx, auth.KindToken, name)
	if err != nil {
		return "", nil, err
	}
	var t auth.Token
	return name, &t, json.Unmarshal(s.Value, &t)
}

func (a *API) showToken(ctx context.Context, r *http.Request) (any, error) {
	name, t, err := a.token(ctx, r)
	if err != nil {
		return nil, err
	}
	return tokenView(name, *t), nil
}

// applyToken sets body's fields on t and checks them.
func (a *API) applyToken(ctx context.Context, t *auth.Token, body TokenBody) error {
	if body.ScopeMap != nil {
		t.ScopeMap = *body.ScopeMap
	}
	if body.Status != nil {
		t.Status = *body.Status
	}
	if body.Expiry != nil {
		t.Expiry = nil
		if *body.Expiry != "" {
			exp, err := time.Parse(time.RFC3339, *body.Expiry)
			if err != nil {
				return ocierr.RequestInvalid.Withf("expiry %q: give an RFC 3339 time, e.g. 2027-01-31T00:00:00Z", *body.Expiry)
			}
			exp = exp.UTC()
			t.Expiry = &exp
		}
	}
	if t.Status != "enabled" && t.Status != "disabled" {
		return ocierr.RequestInvalid.Withf("status %q: enabled or disabled", t.Status)
	}
	if _, err := a.region.Setting(ctx, auth.KindScopeMap, t.ScopeMap); err != nil {
		return ocierr.RequestInvalid.Withf("scopeMap %q: there is no such scope map; create it first (georeg scope-map create)", t.ScopeMap)
	}
	return nil
}

func (a *API) createToken(ctx context.Context, r *http.Request) (any, error) {
	name, err := a.pathName(r, auth.KindToken)
	if err != nil {
		return nil, err
	}
	var body TokenBody
	if err := decode(r, &body, `{"scopeMap": "...", "status": "enabled", "expiry": "2027-01-31T00:00:00Z"}`); err != nil {
		return nil, err
	}
	if err := a.exists(ctx, auth.KindToken, name); err != nil {
		return nil, err
	}
	if err := a.exists(ctx, auth.KindUser, name); err != nil {
		return nil, ocierr.AlreadyExists.Withf("%s is an admin user's name; pick another token name", name)
	}
	t := auth.Token{Status: "enabled", Created: time.Now().UTC()}
	if err := a.applyToken(ctx, &t, body); err != nil {
		return nil, err
	}
	password := auth.NewPassword()
	if t.PasswordHash, err = auth.HashPassword(password); err != nil {
		return nil, err
	}
	if err := a.put(ctx, auth.KindToken, name, t); err != nil {
		return nil, err
	}
	return TokenCreated{TokenView: tokenView(name, t), Password: password}, nil
}

func (a *API) updateToken(ctx context.Context, r *http.Request) (any, error) {
	name, t, err := a.token(ctx, r)
	if err != nil {
		return nil, err
	}
	var body TokenBody
	if err := decode(r, &body, `{"status": "disabled"}`); err != nil {
		return nil, err
	}
	if err := a.applyToken(ctx, t, body); err != nil {
		return nil, err
	}
	if err := a.put(ctx, auth.KindToken, name, t); err != nil {
		return nil, err
	}
	return tokenView(name, *t), nil
}

func (a *API) registry(ctx context.Context) (RegistryView, error) {
	v := RegistryView{NetworkRuleSet: auth.NetworkRules{DefaultAction: auth.Allow, IPRules: []auth.IPRule{}}, OutboundRules: []string{}}
	if s, err := a.region.Setting(ctx, auth.KindRegistry, auth.SettingAnonymousPull); err == nil {
		var ap auth.AnonymousPull
		if json.Unmarshal(s.Value, &ap) == nil {
			v.AnonymousPullEnabled = ap.Enabled
		}
	}
	if s, err := a.region.Setting(ctx, auth.KindRegistry, auth.SettingNetworkRules); err == nil {
		_ = json.Unmarshal(s.Value, &v.NetworkRuleSet)
	}
	if s, err := a.region.Setting(ctx, auth.KindRegistry, auth.SettingOutboundRules); err == nil {
		var o auth.OutboundRules
		if json.Unmarshal(s.Value, &o) == nil && o.Allow != nil {
			v.OutboundRules = o.Allow
		}
	}
	return v, nil
}

func (a *API) showRegistry(ctx context.Context, _ *http.Request) (any, error) {
	return a.registry(ctx)
}

// selfLockout refuses, unless force, network rules that would deny the
// caller's own address: the usual way an operator locks themself out
// (set Deny first, then try to add their range). From loopback the
// management API stays reachable whatever the rules say, but the caller's
// pushes and pulls would not.
func (a *API) selfLockout(r *http.Request, rules auth.NetworkRules, force bool) error {
	if a.auth == nil || force || (a.isPeer != nil && a.isPeer(r)) {
		return nil
	}
	addr, err := a.auth.ClientAddr(r)
	if err != nil || rules.Allows(addr) {
		return nil
	}
	return ocierr.Denied.WithDetail(fmt.Sprintf("these network rules would deny your own address %s (default action %s, and no rule allows it): "+
		"allow it first with: georeg network-rule add --ip-address %s — or repeat with --force to apply them anyway "+
		"(management from this machine's loopback is never denied)", addr, rules.DefaultAction, addr),
		map[string]string{"clientAddress": addr.String()})
}

func (a *API) updateRegistry(ctx context.Context, r *http.Request) (any, error) {
	var body RegistryBody
	if err := decode(r, &body, `{"anonymousPullEnabled": true, "networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"action": "Allow", "value": "10.0.0.0/8"}]}}`); err != nil {
		return nil, err
	}
	if body.NetworkRuleSet != nil {
		if body.NetworkRuleSet.IPRules == nil {
			body.NetworkRuleSet.IPRules = []auth.IPRule{}
		}
		if err := body.NetworkRuleSet.Validate(); err != nil {
			return nil, ocierr.RequestInvalid.Withf("networkRuleSet: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		if err := a.selfLockout(r, *body.NetworkRuleSet, body.Force); err != nil {
			return nil, err
		}
	}
	var outbound []string
	if body.OutboundRules != nil {
		outbound = []string{}
		for _, s := range *body.OutboundRules {
			p, err := auth.ParsePrefix(s)
			if err != nil {
				return nil, ocierr.RequestInvalid.Withf("outboundRules: %v", err)
			}
			outbound = append(outbound, p.String())
		}
		if len(outbound) > 200 {
			return nil, ocierr.RequestInvalid.Withf("outboundRules: at most 200 ranges")
		}
	}
	if body.AnonymousPullEnabled != nil {
		if err := a.put(ctx, auth.KindRegistry, auth.SettingAnonymousPull, auth.AnonymousPull{Enabled: *body.AnonymousPullEnabled}); err != nil {
			return nil, err
		}
	}
	if body.NetworkRuleSet != nil {
		if err := a.put(ctx, auth.KindRegistry, auth.SettingNetworkRules, body.NetworkRuleSet); err != nil {
			return nil, err
		}
	}
	if outbound != nil {
		if err := a.put(ctx, auth.KindRegistry, auth.SettingOutboundRules, auth.OutboundRules{Allow: outbound}); err != nil {
			return nil, err
		}
	}
	return a.registry(ctx)
}
