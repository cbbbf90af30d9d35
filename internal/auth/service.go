// Package auth is the registry's access control: Docker registry token
// auth (a token endpoint and the Bearer challenge on /v2), admin users,
// repository-scoped tokens with scope maps, anonymous pull, network rules,
// and the admin check of the management API.
//
// Everything it decides from (users, tokens, scope maps, public signing
// keys, switches) is registry configuration: settings that replicate, so
// a token issued in one region is accepted in every region. Passwords are
// stored hashed (bcrypt); a region's private signing key stays in the
// region (keys.go). None appears in a log line, an error or an API answer.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/georeg/georeg/internal/meta"
)

// Config is a node's auth configuration (the `auth:` block). Users,
// tokens and keys are not here: they are registry settings.
type Config struct {
	// Enabled turns auth on: /v2 and the management API then need
	// credentials (pulls may stay anonymous, see anonymous-pull).
	Enabled bool `yaml:"enabled"`
	// Service is the name tokens are issued for (their audience); every
	// region of a registry has the same one. Default "georeg".
	Service string `yaml:"service"`
	// Realm is the token endpoint's URL in the challenge; default: the
	// request's own scheme and host with /oauth2/token.
	Realm string `yaml:"realm"`
	// TokenTTL is an access token's life (default 5 min); RefreshTTL a
	// refresh token's (default 24 h).
	TokenTTL   time.Duration `yaml:"tokenTTL"`
	RefreshTTL time.Duration `yaml:"refreshTTL"`
	// AdminPasswordFile, when set, holds the password of the user "admin",
	// created at start when the registry has no user yet.
	AdminPasswordFile string `yaml:"adminPasswordFile"`
	// TrustedProxies are the addresses (CIDRs) of front doors: for a
	// request from one, network rules judge the client address it appends
	// to X-Forwarded-For instead of the door's own.
	TrustedProxies []string `yaml:"trustedProxies"`
}

// WithDefaults returns c with zero fields set.
func (c Config) WithDefaults() Config {
	if c.Service == "" {
		c.Service = "georeg"
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = 5 * time.Minute
	}
	if c.RefreshTTL == 0 {
		c.RefreshTTL = 24 * time.Hour
	}
	return c
}

// Validate reports every problem.
func (c Config) Validate() error {
	var errs []error
	if c.TokenTTL < 0 || (c.TokenTTL > 0 && c.TokenTTL < time.Minute) {
		errs = append(errs, fmt.Errorf("tokenTTL: %s; give at least 1m (clients refresh at most that often)", c.TokenTTL))
	}
	if c.RefreshTTL < 0 {
		errs = append(errs, fmt.Errorf("refreshTTL: %s is negative", c.RefreshTTL))
	}
	for i, p := range c.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("trustedProxies[%d]: %v", i, err))
		}
	}
	return errors.Join(errs...)
}

// Issuer is the iss claim of every token georeg issues.
const Issuer = "georeg"

// Principal is who a request authenticated as.
type Principal struct {
	Name  string
	Kind  string // KindUser (an admin) or KindToken
	Admin bool
	Rules []Rule // a token's scope map
}

// Claims are a registry token's JWT claims (the Docker token spec's
// access list, plus georeg's own).
type Claims struct {
	jwt.RegisteredClaims
	Access []Scope `json:"access"`
	// Kind is KindUser or KindToken: who the subject is.
	Kind string `json:"georeg_kind"`
	// Admin grants the management API.
	Admin bool `json:"georeg_admin,omitempty"`
	// Refresh marks a refresh token: it buys access tokens, and grants
	// nothing itself.
	Refresh bool `json:"georeg_refresh,omitempty"`
}

// Service issues and checks tokens for one node.
type Service struct {
	cfg      Config
	settings Settings
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	keys     map[string]*ecdsa.PublicKey // every region's, by kid: they verify
	signer   string                      // kid of the key this region signs with: its newest
	signKey  *ecdsa.PrivateKey
	loadedAt time.Time
	// missing are kids a token waited for in vain (awaitKey), by when:
	// tokens naming them are not kept waiting again for missingFor.
	missing map[string]time.Time

	verified  sync.Map // raw token -> verifiedToken, for tokens seen before (bounded by verifiedMax)
	live      sync.Map // kind\x00name -> liveness, rechecked every liveRefresh
	nVerified int64
	passwords sync.Map // sha256(kind, name, password, hash) -> struct{}: a bcrypt check that passed

	switchMu sync.Mutex
	sw       *switches // registry switches, reread every switchesRefresh

	audit func(ctx context.Context, actor, outcome, detail string) // logins, for the audit log

	trusted []netip.Prefix // cfg.TrustedProxies, parsed once
	guard   *loginGuard    // failed-login budgets and their audit (limit.go)

	hostOK  func(hostport string) bool // SetHosts: the registry's names
	ownHost string                     // SetHosts: this region's host:port
}

// SetAudit has logins reported to record: those granted at the token
// endpoint, and failed ones anywhere (the first of a name's minute at
// once, the rest aggregated by Run).
func (s *Service) SetAudit(record func(ctx context.Context, actor, outcome, detail string)) {
	s.audit = record
}

func (s *Service) recordLogin(ctx context.Context, actor, outcome, detail string) {
	if s.audit != nil {
		s.audit(ctx, actor, outcome, detail)
	}
}

// Cache bounds.
const (
	keysRefresh = 2 * time.Second
	forcedRead  = 100 * time.Millisecond // see loadKeys
	verifiedMax = 10_000
)

// New returns the auth service over settings.
func New(cfg Config, settings Settings, log *slog.Logger) *Service {
	s := &Service{cfg: cfg.WithDefaults(), settings: settings, log: log, now: time.Now, guard: newLoginGuard()}
	for _, p := range cfg.TrustedProxies {
		if pr, err := parsePrefix(p); err == nil { // Validate reported the others
			s.trusted = append(s.trusted, pr)
		}
	}
	return s
}

// WithClock returns a copy of s that reads the time from now: tools and
// tests issue tokens as of another time with it.
func (s *Service) WithClock(now func() time.Time) *Service {
	return &Service{cfg: s.cfg, settings: s.settings, log: s.log, now: now, audit: s.audit, trusted: s.trusted, guard: newLoginGuard(),
		hostOK: s.hostOK, ownHost: s.ownHost}
}

// Enabled reports whether auth is on.
func (s *Service) Enabled() bool { return s.cfg.Enabled }

// Bootstrap makes sure this region has a signing key of its own (keys.go)
// and, when AdminPasswordFile is set and this region knows no user, the
// user admin as a default setting (older than any other write of it).
func (s *Service) Bootstrap(ctx context.Context) error {
	if err := s.maintainKeys(ctx); err != nil {
		return err
	}
	if s.cfg.AdminPasswordFile == "" {
		return nil
	}
	users, err := s.settings.Settings(ctx, KindUser)
	if err != nil || len(users) > 0 {
		return err
	}
	b, err := os.ReadFile(s.cfg.AdminPasswordFile)
	if err != nil {
		return fmt.Errorf("auth.adminPasswordFile: %w", err)
	}
	hash, err := HashPassword(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("auth.adminPasswordFile: %w", err)
	}
	value, _ := json.Marshal(User{PasswordHash: hash, Created: s.now().UTC()})
	// A default: any admin the registry has (made or changed anywhere)
	// wins over it, so a region started later with another password
	// file resets nothing (region.PutDefaultSetting).
	return s.settings.PutDefaultSetting(ctx, KindUser, "admin", value)
}

// loadKeys refreshes the key cache when it is older than keysRefresh, or
// when force is set (a token names a kid not seen yet).
func (s *Service) loadKeys(ctx context.Context, force bool) error {
	if force {
		// A token names a kid not seen yet (a key just made in another
		// region): read the store once it was last read forcedRead ago, so
		// a burst of such tokens reads it once and none is judged on a
		// read older than that.
		s.mu.Lock()
		wait := forcedRead - time.Since(s.loadedAt)
		s.mu.Unlock()
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys != nil && time.Since(s.loadedAt) < keysRefresh && !force {
		return nil
	}
	if force && s.keys != nil && time.Since(s.loadedAt) < forcedRead {
		return nil // read since by another caller
	}
	settings, err := s.settings.Settings(ctx, KindSigningKey)
	if err != nil {
		return err
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, st := range settings {
		k, _, err := parsePublic(st.Value)
		if err != nil {
			s.log.WarnContext(ctx, "skip a signing key that does not parse", "kid", st.Name, "error", err)
			continue
		}
		keys[st.Name] = k
	}
	locals, err := s.settings.LocalKeys(ctx)
	if err != nil {
		return err
	}
	s.keys, s.loadedAt, s.signer, s.signKey = keys, time.Now(), "", nil
	// The newest key signs once it is keyPublished old (its public half
	// has reached the other regions, so they verify what it signs); until
	// then the one before it still does. A region's first key signs at
	// once: there is no other.
	var usable []meta.LocalKey
	var parsed []*ecdsa.PrivateKey
	for _, l := range locals {
		if k, err := parsePrivate(l.PEM); err == nil {
			usable, parsed = append(usable, l), append(parsed, k)
			keys[l.Kid] = &k.PublicKey // its setting may be on its way
		}
	}
	if n := len(usable); n > 0 {
		i := n - 1
		if n > 1 && s.now().Sub(usable[i].Created) < keyPublished {
			i--
		}
		s.signer, s.signKey = usable[i].Kid, parsed[i]
	}
	// A token signed by a key removed since (rotated out) is verified
	// afresh next time, and refused.
	s.verified.Range(func(raw, v any) bool {
		if _, ok := keys[v.(verifiedToken).kid]; !ok {
			s.verified.Delete(raw)
		}
		return true
	})
	return nil
}

// ErrCredentials is every failed login: it does not say which part was
// wrong.
var ErrCredentials = errors.New("wrong user name or password, or the token is disabled or expired")

// Authenticate checks a user's or token's password.
func (s *Service) Authenticate(ctx context.Context, name, password string) (*Principal, error) {
	if st, err := s.settings.Setting(ctx, KindUser, name); err == nil {
		var u User
		if json.Unmarshal(st.Value, &u) == nil && !u.Disabled && s.checkPassword(KindUser, name, password, u.PasswordHash) {
			return &Principal{Name: name, Kind: KindUser, Admin: true}, nil
		}
		return nil, ErrCredentials
	}
	st, err := s.settings.Setting(ctx, KindToken, name)
	if err != nil {
		// As long as a known name takes: the answer's time does not tell
		// which names exist.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return nil, ErrCredentials
	}
	var t Token
	if json.Unmarshal(st.Value, &t) != nil || !s.checkPassword(KindToken, name, password, t.PasswordHash) || t.unusable(s.now()) != "" {
		return nil, ErrCredentials
	}
	return s.tokenPrincipal(ctx, name, t)
}

// dummyHash is compared against for a name that does not exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("georeg-no-such-login"), bcrypt.DefaultCost)

// checkPassword runs bcrypt once per (name, password, hash): a client
// that fetches a token per repository does not pay 50 ms each time.
func (s *Service) checkPassword(kind, name, password, hash string) bool {
	key := sha256.Sum256([]byte(kind + "\x00" + name + "\x00" + password + "\x00" + hash))
	if _, ok := s.passwords.Load(key); ok {
		return true
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return false
	}
	s.passwords.Store(key, struct{}{})
	return true
}

func (s *Service) tokenPrincipal(ctx context.Context, name string, t Token) (*Principal, error) {
	st, err := s.settings.Setting(ctx, KindScopeMap, t.ScopeMap)
	if err != nil {
		return &Principal{Name: name, Kind: KindToken}, nil // its scope map is gone: it may do nothing
	}
	var m ScopeMap
	if err := json.Unmarshal(st.Value, &m); err != nil {
		return nil, err
	}
	rules, err := m.Rules()
	if err != nil {
		return nil, err
	}
	return &Principal{Name: name, Kind: KindToken, Rules: rules}, nil
}

// current reloads a principal named in a refresh token, as it is now.
func (s *Service) current(ctx context.Context, kind, name string) (*Principal, error) {
	switch kind {
	case KindUser:
		st, err := s.settings.Setting(ctx, KindUser, name)
		if err != nil {
			return nil, ErrCredentials
		}
		var u User
		if json.Unmarshal(st.Value, &u) != nil || u.Disabled {
			return nil, ErrCredentials
		}
		return &Principal{Name: name, Kind: KindUser, Admin: true}, nil
	case KindToken:
		st, err := s.settings.Setting(ctx, KindToken, name)
		if err != nil {
			return nil, ErrCredentials
		}
		var t Token
		if json.Unmarshal(st.Value, &t) != nil || t.unusable(s.now()) != "" {
			return nil, ErrCredentials
		}
		return s.tokenPrincipal(ctx, name, t)
	}
	return nil, ErrCredentials
}

// Grant returns what p may have of what it asked for: every action asked
// that p holds, per scope; scopes with nothing granted are left out.
func (p *Principal) Grant(want []Scope) []Scope {
	out := []Scope{}
	for _, w := range want {
		g := Scope{Type: w.Type, Name: w.Name}
		for _, a := range w.Actions {
			if p.may(w, a) {
				g.Actions = append(g.Actions, a)
			}
		}
		if len(g.Actions) > 0 {
			out = append(out, g)
		}
	}
	return out
}

func (p *Principal) may(sc Scope, action string) bool {
	if p.Admin {
		return true
	}
	if sc.Type == "registry" {
		// The catalog lists every repository: a token needs metadata/read
		// on all of them.
		return sc.Name == "catalog" && slices.ContainsFunc(p.Rules, func(r Rule) bool {
			return r.Repository == "*" && r.Action == MapMetadataRead
		})
	}
	if action == "*" {
		return false
	}
	return slices.ContainsFunc(p.Rules, func(r Rule) bool { return r.allows(sc.Name, action) })
}

// Issue signs a token for p with access granted, valid for ttl.
func (s *Service) Issue(ctx context.Context, p *Principal, granted []Scope, refresh bool) (string, time.Time, error) {
	if err := s.loadKeys(ctx, false); err != nil {
		return "", time.Time{}, err
	}
	s.mu.Lock()
	kid, key := s.signer, s.signKey
	s.mu.Unlock()
	if key == nil {
		return "", time.Time{}, errors.New("no signing key yet: the region is starting; retry")
	}
	now := s.now()
	ttl := s.cfg.TokenTTL
	if refresh {
		ttl, granted = s.cfg.RefreshTTL, nil
	}
	exp := now.Add(ttl)
	c := Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: Issuer, Subject: p.Name, Audience: jwt.ClaimStrings{s.cfg.Service},
		ExpiresAt: jwt.NewNumericDate(exp), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		IssuedAt: jwt.NewNumericDate(now), ID: NewPassword(),
	}, Access: granted, Kind: p.Kind, Admin: p.Admin && !refresh, Refresh: refresh}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = kid
	raw, err := tok.SignedString(key)
	return raw, exp, err
}

// liveRefresh is how long a check that a token's user or token may still
// log in is trusted: disabling, expiring or deleting one takes its access
// tokens away within this, not at their expiry.
const liveRefresh = time.Second

type liveness struct {
	ok bool
	at time.Time
}

// alive reports whether the user or token c was issued to is still
// usable (anonymous is).
func (s *Service) alive(ctx context.Context, c *Claims) bool {
	if c.Kind == "anonymous" {
		// Its grants come from anonymous pull: turned off, they end
		// within the switches' refresh, not at the token's expiry.
		return len(c.Access) == 0 || s.switches(ctx).anonymousPull
	}
	if c.Kind != KindUser && c.Kind != KindToken {
		return true
	}
	key := c.Kind + "\x00" + c.Subject
	now := s.now()
	if v, ok := s.live.Load(key); ok && now.Sub(v.(liveness).at) < liveRefresh && !now.Before(v.(liveness).at) {
		return v.(liveness).ok
	}
	p, err := s.current(ctx, c.Kind, c.Subject)
	ok := err == nil && (p.Admin || !c.Admin)
	s.live.Store(key, liveness{ok: ok, at: now})
	return ok
}

// verifiedToken is a token whose signature checked out, and the key that
// signed it.
type verifiedToken struct {
	claims *Claims
	kid    string
}

// errToken is every reason a presented token is refused, said plainly.
type errToken struct{ reason string }

func (e errToken) Error() string { return e.reason }

// Verify checks a token's signature (any region's key), issuer,
// audience (this service) and times, and returns its claims.
func (s *Service) Verify(ctx context.Context, raw string) (*Claims, error) {
	// Keys first: a reload drops the cached tokens of a key retired since.
	if err := s.loadKeys(ctx, false); err != nil {
		return nil, err
	}
	if c, ok := s.verified.Load(raw); ok {
		// loadKeys drops the tokens of a key that was removed.
		v := c.(verifiedToken)
		if s.now().Before(v.claims.ExpiresAt.Time) {
			return v.claims, nil
		}
		return nil, errToken{"the token has expired; get a new one from the token endpoint"}
	}
	var claims Claims
	var kid string
	_, err := jwt.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ = t.Header["kid"].(string)
		key := s.key(kid)
		if key == nil {
			var exp time.Time
			if e, err := t.Claims.GetExpirationTime(); err == nil && e != nil {
				exp = e.Time
			}
			key = s.awaitKey(ctx, kid, exp)
		}
		if key == nil {
			return nil, errors.New("signed by a key this registry does not have")
		}
		return key, nil
	}, jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}), jwt.WithIssuer(Issuer),
		jwt.WithAudience(s.cfg.Service), jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now))
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			return nil, errToken{"the token has expired; get a new one from the token endpoint"}
		case errors.Is(err, jwt.ErrTokenInvalidAudience):
			return nil, errToken{fmt.Sprintf("the token is for another service; this registry's service is %q", s.cfg.Service)}
		}
		return nil, errToken{"the token is not valid here (" + strings.TrimPrefix(err.Error(), "token is unverifiable: error while executing keyfunc: ") + ")"}
	}
	s.mu.Lock()
	if s.nVerified >= verifiedMax {
		s.verified.Clear() // tokens live minutes: start over rather than grow
		s.nVerified = 0
	}
	s.verified.Store(raw, verifiedToken{claims: &claims, kid: kid})
	s.nVerified++
	s.mu.Unlock()
	return &claims, nil
}

// unknownKeyWait bounds how long a token that names a key this region
// does not hold waits for it: a region's first key signs at once, and its
// public half reaches the other regions by replication a moment later
// (under a second on one machine), so a token it issued in that moment
// and presented to another region is verified once the key arrives
// instead of refused.
const unknownKeyWait = 3 * time.Second

// awaitKey returns the public key kid names, reading the store again
// (every forcedRead at most, one read for all waiting tokens) until it is
// there or unknownKeyWait passed; nil then. A token that expired by exp
// is refused whatever its key, so it is not kept waiting (a retired key's
// tokens all expired before it was retired); nor is one naming a kid a
// token waited for in vain within missingFor (a key of another registry,
// say: one wait, then refusals at once).
func (s *Service) awaitKey(ctx context.Context, kid string, exp time.Time) *ecdsa.PublicKey {
	start := time.Now()
	s.mu.Lock()
	since, missed := s.missing[kid]
	s.mu.Unlock()
	wait := !exp.IsZero() && s.now().Before(exp) && (!missed || start.Sub(since) >= missingFor)
	for {
		err := s.loadKeys(ctx, true) // a store that fails is not asked again at once
		k := s.key(kid)
		if k != nil || err != nil || !wait {
			return k
		}
		if time.Since(start) >= unknownKeyWait {
			s.mu.Lock()
			if s.missing == nil || len(s.missing) >= missingMax {
				s.missing = map[string]time.Time{}
			}
			s.missing[kid] = time.Now()
			s.mu.Unlock()
			return nil
		}
	}
}

// Bounds of the kids awaited in vain (awaitKey).
const (
	missingFor = time.Minute
	missingMax = 1024
)

func (s *Service) key(kid string) *ecdsa.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[kid]
}
