package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// Setting kinds of the registry's access configuration. They replicate
// like every setting (last-writer-wins, any region writes), so a user,
// token or key made in one region works in every region.
const (
	KindUser       = "user"        // an admin: name and bcrypt hash
	KindToken      = "token"       // a repository-scoped credential bound to a scope map
	KindScopeMap   = "scope-map"   // repository patterns x actions
	KindSigningKey = "signing-key" // the public half of a region's ECDSA P-256 token-signing key; its name is the kid (keys.go)
	KindRegistry   = "registry"    // registry-wide switches: anonymous-pull, network-rules
)

// Names of the KindRegistry settings.
const (
	SettingAnonymousPull = "anonymous-pull"
	SettingNetworkRules  = "network-rules"
	// SettingOutboundRules lists the loopback and private ranges regions
	// may connect to on a user's word (internal/outbound): OutboundRules.
	SettingOutboundRules = "outbound-rules"
)

// Settings is what auth reads and writes of the registry's configuration
// (region.Region).
type Settings interface {
	Settings(ctx context.Context, kind string) ([]meta.Setting, error)
	Setting(ctx context.Context, kind, name string) (*meta.Setting, error)
	PutSetting(ctx context.Context, kind, name string, value json.RawMessage) (hlc.Version, error)
	DeleteSetting(ctx context.Context, kind, name string) (hlc.Version, error)
	PutDefaultSetting(ctx context.Context, kind, name string, value json.RawMessage) error
	// Name is the region's; LocalKeys and the others its own private
	// signing keys (keys.go), which never replicate.
	Name() string
	LocalKeys(ctx context.Context) ([]meta.LocalKey, error)
	PutLocalKey(ctx context.Context, k meta.LocalKey, since time.Time) (bool, error)
	DeleteLocalKey(ctx context.Context, kid string) error
}

// User is an administrator of the registry.
type User struct {
	PasswordHash string    `json:"passwordHash"`
	Created      time.Time `json:"created"`
	Disabled     bool      `json:"disabled,omitempty"`
}

// Token is a repository-scoped credential, as ACR's tokens: a name and
// password whose rights are those of its scope map, until it expires or
// is disabled.
type Token struct {
	ScopeMap     string     `json:"scopeMap"`
	Status       string     `json:"status"` // enabled or disabled
	Expiry       *time.Time `json:"expiry,omitempty"`
	PasswordHash string     `json:"passwordHash"`
	Created      time.Time  `json:"created"`
}

// ScopeMap lists what its tokens may do.
type ScopeMap struct {
	Actions     []string  `json:"actions"` // repositories/<pattern>/<action>
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
}

// Rules parses the scope map's actions.
func (m ScopeMap) Rules() ([]Rule, error) {
	var out []Rule
	for _, a := range m.Actions {
		r, err := ParseRule(a)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// OutboundRules is the value of the outbound-rules setting.
type OutboundRules struct {
	Allow []string `json:"allow"`
}

// AnonymousPull is the value of the anonymous-pull setting.
type AnonymousPull struct {
	Enabled bool `json:"enabled"`
}

var nameRegexp = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{2,49}$`)

// ValidateName checks a user, token or scope-map name: 3 to 50 letters,
// digits, '-' and '_', starting with a letter or digit.
func ValidateName(kind, name string) error {
	if !nameRegexp.MatchString(name) {
		return fmt.Errorf("%s name %q: use 3 to 50 letters, digits, '-' and '_', starting with a letter or digit", kind, name)
	}
	return nil
}

// HashPassword returns the bcrypt hash of password.
func HashPassword(password string) (string, error) {
	if len(password) < 8 || len(password) > 72 {
		return "", errors.New("a password has 8 to 72 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}

// NewPassword returns a random password (32 hex characters).
func NewPassword() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// IsSecretKind reports whether settings of kind hold secrets (password
// hashes) or keys: they are never printed or exported.
func IsSecretKind(kind string) bool {
	return kind == KindUser || kind == KindToken || kind == KindSigningKey
}

// expired reports whether t has an expiry before now.
func (t Token) expired(now time.Time) bool { return t.Expiry != nil && !now.Before(*t.Expiry) }

// describe says why a token cannot be used, or "".
func (t Token) unusable(now time.Time) string {
	switch {
	case strings.EqualFold(t.Status, "disabled"):
		return "disabled"
	case t.expired(now):
		return "expired"
	}
	return ""
}
