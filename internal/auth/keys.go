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
	"sort"
	"time"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// Token-signing keys. Each region signs with a key of its own whose
// private half never leaves it (a local table of its metadata store,
// shared by its nodes: meta.LocalKey); the public half is a signing-key
// setting, replicated, so every region verifies every region's tokens.
// `georeg keys rotate` asks every region for a new key (a replicated
// key-rotation setting): the new key signs within seconds (keyPublished),
// the old one verifies
// until every token it signed has expired (the longer of the access and
// refresh TTLs, plus a minute), then is retired: its private half deleted,
// its public half tombstoned.

// signingKey is the value of a KindSigningKey setting.
type signingKey struct {
	PublicKey string    `json:"publicKey,omitempty"` // PKIX PEM
	Region    string    `json:"region,omitempty"`    // whose key it is
	Created   time.Time `json:"created"`
	// PrivateKey is what a key written by an earlier version carried: it
	// verifies (its public half), signs nowhere, and is rewritten without
	// it at the next start of any region.
	PrivateKey string `json:"privateKey,omitempty"`
}

// keyPublished is how old a region's new key is before it signs: by then
// its public half has reached the other regions, which then verify what
// it signs (the key before it signs meanwhile).
const keyPublished = 5 * time.Second

// SettingKeyRotation is the KindRegistry setting asking every region for
// a new signing key: KeyRotation.
const SettingKeyRotation = "key-rotation"

// KeyRotation is the value of the key-rotation setting.
type KeyRotation struct {
	Requested time.Time `json:"requested"`
}

// newKey makes a key pair: the region's private key and its public
// setting value.
func newKey(region string, now time.Time) (meta.LocalKey, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return meta.LocalKey{}, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return meta.LocalKey{}, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return meta.LocalKey{}, nil, err
	}
	var kid [8]byte
	_, _ = rand.Read(kid[:])
	local := meta.LocalKey{Kid: hex.EncodeToString(kid[:]), PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), Created: now.UTC()}
	value, err := json.Marshal(signingKey{PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})), Region: region, Created: now.UTC()})
	return local, value, err
}

func parsePrivate(text string) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		return nil, errors.New("signing key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("signing key: not ECDSA P-256")
	}
	return ek, nil
}

// parsePublic reads a signing-key setting's public key (or a legacy
// setting's private one).
func parsePublic(value []byte) (*ecdsa.PublicKey, signingKey, error) {
	var sk signingKey
	if err := json.Unmarshal(value, &sk); err != nil {
		return nil, sk, err
	}
	if sk.PublicKey == "" {
		k, err := parsePrivate(sk.PrivateKey)
		if err != nil {
			return nil, sk, err
		}
		return &k.PublicKey, sk, nil
	}
	block, _ := pem.Decode([]byte(sk.PublicKey))
	if block == nil {
		return nil, sk, errors.New("signing key: no PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, sk, err
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, sk, errors.New("signing key: not ECDSA P-256")
	}
	return ek, sk, nil
}

// retireAfter is how long a key verifies after a newer key of its region
// began to sign: every token it signed has expired by then.
func (s *Service) retireAfter() time.Duration {
	return max(s.cfg.TokenTTL, s.cfg.RefreshTTL) + time.Minute
}

// newLocalKey makes this region a new signing key, private here, public
// half published, unless another node of the region made one after since.
func (s *Service) newLocalKey(ctx context.Context, since time.Time) error {
	at := s.now().Truncate(time.Millisecond) // as stored
	locals, err := s.settings.LocalKeys(ctx)
	if err != nil {
		return err
	}
	if n := len(locals); n > 0 && !at.After(locals[n-1].Created) {
		at = locals[n-1].Created.Add(time.Millisecond) // the newest key is the last made
	}
	local, value, err := newKey(s.settings.Name(), at)
	if err != nil {
		return err
	}
	stored, err := s.settings.PutLocalKey(ctx, local, since)
	if err != nil {
		return fmt.Errorf("store a signing key: %w", err)
	}
	if !stored {
		return nil // another node of this region made it
	}
	if _, err := s.settings.PutSetting(ctx, KindSigningKey, local.Kid, value); err != nil {
		return fmt.Errorf("publish a signing key: %w", err)
	}
	s.log.InfoContext(ctx, "new token-signing key", "kid", local.Kid)
	return nil
}

// Rotate makes this region a new signing key at once (it signs once
// published, keyPublished later) and asks every other region for one
// (they follow within seconds).
func (s *Service) Rotate(ctx context.Context) error {
	requested := s.now().UTC().Truncate(time.Millisecond)
	value, _ := json.Marshal(KeyRotation{Requested: requested})
	if _, err := s.settings.PutSetting(ctx, KindRegistry, SettingKeyRotation, value); err != nil {
		return err
	}
	if err := s.newLocalKey(ctx, requested); err != nil {
		return err
	}
	s.forgetKeys() // the new key signs at once
	return nil
}

// forgetKeys has the keys reread at their next use.
func (s *Service) forgetKeys() {
	s.mu.Lock()
	s.keys = nil
	s.mu.Unlock()
}

// maintainKeys gives this region a key when it has none or a rotation
// asks for a newer one, retires the keys a newer one replaced longer ago
// than retireAfter, and rewrites settings of earlier versions that carry
// a private key.
func (s *Service) maintainKeys(ctx context.Context) error {
	locals, err := s.settings.LocalKeys(ctx)
	if err != nil {
		return err
	}
	var rotation KeyRotation
	if st, err := s.settings.Setting(ctx, KindRegistry, SettingKeyRotation); err == nil {
		_ = json.Unmarshal(st.Value, &rotation)
	}
	if len(locals) == 0 || locals[len(locals)-1].Created.Before(rotation.Requested.Truncate(time.Millisecond)) {
		if err := s.newLocalKey(ctx, rotation.Requested.Truncate(time.Millisecond)); err != nil {
			return err
		}
		s.forgetKeys()
		if locals, err = s.settings.LocalKeys(ctx); err != nil {
			return err
		}
	}
	now := s.now()
	newest := locals[len(locals)-1]
	for i, k := range locals[:len(locals)-1] {
		if now.Sub(locals[i+1].Created) < s.retireAfter() {
			continue
		}
		if _, err := s.settings.DeleteSetting(ctx, KindSigningKey, k.Kid); err != nil && !isNotSet(err) {
			return err
		}
		if err := s.settings.DeleteLocalKey(ctx, k.Kid); err != nil {
			return err
		}
		s.forgetKeys()
		s.log.InfoContext(ctx, "retired a token-signing key", "kid", k.Kid)
	}
	settings, err := s.settings.Settings(ctx, KindSigningKey)
	if err != nil {
		return err
	}
	for _, st := range settings {
		pub, sk, err := parsePublic(st.Value)
		if err != nil || sk.PrivateKey == "" {
			continue
		}
		if now.Sub(newest.Created) >= s.retireAfter() {
			_, err = s.settings.DeleteSetting(ctx, KindSigningKey, st.Name) // replaced long enough ago
		} else {
			der, _ := x509.MarshalPKIXPublicKey(pub)
			value, _ := json.Marshal(signingKey{PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), Created: sk.Created})
			_, err = s.settings.PutSetting(ctx, KindSigningKey, st.Name, value)
		}
		if err != nil && !isNotSet(err) {
			return err
		}
	}
	return nil
}

func isNotSet(err error) bool { return ocierr.NameUnknown.Is(err) }

// KeyInfo describes one signing key (GET /_georeg/v1/keys).
type KeyInfo struct {
	Kid     string    `json:"kid"`
	Region  string    `json:"region"`
	Created time.Time `json:"created"`
	// State is signing (the region's newest key, or the one before a key
	// made less than keyPublished ago), next (that new key: it signs once
	// the other regions have it), verifying (a newer one signs; tokens it
	// signed are still valid) or legacy (written by an earlier version,
	// for the whole registry).
	State string `json:"state"`
	// Retires is when a verifying key is retired.
	Retires *time.Time `json:"retires,omitempty"`
}

// Keys lists the registry's signing keys, by region, newest first.
func (s *Service) Keys(ctx context.Context) ([]KeyInfo, error) {
	settings, err := s.settings.Settings(ctx, KindSigningKey)
	if err != nil {
		return nil, err
	}
	var out []KeyInfo
	for _, st := range settings {
		_, sk, err := parsePublic(st.Value)
		if err != nil {
			continue
		}
		out = append(out, KeyInfo{Kid: st.Name, Region: sk.Region, Created: sk.Created})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Region != out[j].Region {
			return out[i].Region < out[j].Region
		}
		return out[i].Created.After(out[j].Created)
	})
	now := s.now()
	for i := range out {
		newest := i == 0 || out[i-1].Region != out[i].Region
		older := i+1 < len(out) && out[i+1].Region == out[i].Region
		switch {
		case out[i].Region == "":
			out[i].State = "legacy"
		case newest && older && now.Sub(out[i].Created) < keyPublished:
			out[i].State = "next" // signs once published (keyPublished)
		case newest, out[i-1].State == "next":
			out[i].State = "signing"
		default:
			out[i].State = "verifying"
			t := out[i-1].Created.Add(s.retireAfter())
			out[i].Retires = &t
		}
	}
	return out, nil
}
