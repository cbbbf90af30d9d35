package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
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
	KindSigningKey = "signing-key" // an ECDSA P-256 key that signs registry tokens; its name is the kid
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

// signingKey is the value of a KindSigningKey setting.
type signingKey struct {
	PrivateKey string    `json:"privateKey"` // PKCS#8 PEM
	Created    time.Time `json:"created"`
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

// newSigningKey makes a key and its setting value.
func newSigningKey(now time.Time) (string, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", nil, err
	}
	var kid [8]byte
	_, _ = rand.Read(kid[:])
	value, err := json.Marshal(signingKey{PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), Created: now.UTC()})
	return hex.EncodeToString(kid[:]), value, err
}

func parseSigningKey(value []byte) (*ecdsa.PrivateKey, time.Time, error) {
	var sk signingKey
	if err := json.Unmarshal(value, &sk); err != nil {
		return nil, time.Time{}, err
	}
	block, _ := pem.Decode([]byte(sk.PrivateKey))
	if block == nil {
		return nil, time.Time{}, errors.New("signing key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, time.Time{}, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, time.Time{}, errors.New("signing key: not ECDSA P-256")
	}
	return ek, sk.Created, nil
}

// IsSecretKind reports whether settings of kind hold secrets (password
// hashes, private keys): they are never printed or exported.
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
