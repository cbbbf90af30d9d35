// Package peerauth authenticates regions to each other and the front door
// to regions.
//
// The registry's replication secret admits a region: whoever holds it may
// join. It never crosses the network and is not a credential. From it each
// process derives three keys, one per purpose:
//
//   - the peer key signs region tokens: a region calling another presents
//     "georeg-peer.FROM.TO.EXP.MAC", valid only at region TO, only until
//     EXP (at most TokenTTL ahead), and only while FROM is a member of the
//     registry as TO knows it (a configured peer or a registered replica
//     not deleted). A token that leaks is good at one region for minutes;
//     removing its region revokes it at once.
//   - the identity key proves a region's name: before a region sends any
//     token to an endpoint, the endpoint must answer a fresh nonce with an
//     HMAC under it (IdentityPath). A replica endpoint registered by
//     mistake or by an attacker (http://evil) receives a nonce, never a
//     credential.
//   - the probe key signs the front door's tokens, which read health and
//     replication state and nothing else. The door is given only this key
//     (ProbeKey), so it cannot act as a region.
package peerauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// TokenTTL is how long a region token is valid after it is minted.
// Senders renew theirs at half of it.
const TokenTTL = 5 * time.Minute

// MaxSkew is how far apart regions' clocks may be for their tokens to be
// accepted: a token is refused once its expiry passed, and when it
// expires more than TokenTTL+MaxSkew ahead (minted with a far-future
// expiry, or by a clock far ahead).
const MaxSkew = time.Minute

// MinSecretLength is the shortest replication secret a region with auth
// on accepts (what `openssl rand -hex 16` prints).
const MinSecretLength = 32

// Keys are what a process holds derived from the replication secret. A
// region holds all three; the front door only the probe key.
type Keys struct {
	peer, identity, probe []byte
}

// FromSecret derives every key from the replication secret. An empty
// secret gives keys that sign nothing and accept nothing.
func FromSecret(secret string) Keys {
	if secret == "" {
		return Keys{}
	}
	return Keys{peer: derive(secret, "peer-token"), identity: derive(secret, "identity"), probe: derive(secret, "probe-token")}
}

// ProbeKey is the hex form of the probe key of secret: what the front
// door is configured with (`georeg replication probe-key`).
func ProbeKey(secret string) string { return hex.EncodeToString(derive(secret, "probe-token")) }

// ProbeOnly returns the keys of a process given only a probe key in hex
// (the front door).
func ProbeOnly(probeKeyHex string) (Keys, error) {
	k, err := hex.DecodeString(probeKeyHex)
	if err != nil || len(k) != sha256.Size {
		return Keys{}, errors.New("a probe key is 64 hex digits (georeg replication probe-key prints it)")
	}
	return Keys{probe: k}, nil
}

// Derive derives a key for purpose from the replication secret, apart from
// every key above (a data-endpoint signing key, for one).
func Derive(secret, purpose string) []byte { return derive(secret, "other:"+purpose) }

func derive(secret, purpose string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("georeg-key:" + purpose))
	return m.Sum(nil)
}

func mac(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strings.Join(parts, "|")))
	return hex.EncodeToString(m.Sum(nil))
}

// regionName is the form of a region's name.
var regionName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

const (
	peerPrefix  = "georeg-peer."
	probePrefix = "georeg-probe."
)

// Token mints the token region from presents to region to, valid until
// now+TokenTTL.
func (k Keys) Token(from, to string, now time.Time) string {
	exp := strconv.FormatInt(now.Add(TokenTTL).Unix(), 10)
	return peerPrefix + from + "." + to + "." + exp + "." + mac(k.peer, "peer", from, to, exp)
}

// Token errors, for logs and tests; a refused request gets UNAUTHORIZED.
var (
	ErrMalformed = errors.New("not a region token")
	ErrAudience  = errors.New("the token is for another region")
	ErrExpired   = errors.New("the token expired")
	ErrTooLong   = errors.New("the token expires too far ahead")
	ErrSignature = errors.New("the token's signature does not match (another replication secret?)")
)

// Verify returns the region that minted token for self, or why token is
// refused. It does not check membership (Verifier does).
func (k Keys) Verify(token, self string, now time.Time) (string, error) {
	rest, ok := strings.CutPrefix(token, peerPrefix)
	if !ok || len(k.peer) == 0 {
		return "", ErrMalformed
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 || !regionName.MatchString(parts[0]) || !regionName.MatchString(parts[1]) {
		return "", ErrMalformed
	}
	from, to, expText, sig := parts[0], parts[1], parts[2], parts[3]
	exp, err := strconv.ParseInt(expText, 10, 64)
	if err != nil {
		return "", ErrMalformed
	}
	if !hmac.Equal([]byte(sig), []byte(mac(k.peer, "peer", from, to, expText))) {
		return "", ErrSignature
	}
	if to != self {
		return "", fmt.Errorf("%w (%s, not %s)", ErrAudience, to, self)
	}
	return from, checkExpiry(exp, now)
}

func checkExpiry(exp int64, now time.Time) error {
	switch {
	case exp <= now.Unix():
		return ErrExpired
	case exp > now.Add(TokenTTL+MaxSkew).Unix():
		return ErrTooLong
	}
	return nil
}

// ProbeToken mints the front door's token, valid until now+TokenTTL.
func (k Keys) ProbeToken(now time.Time) string {
	exp := strconv.FormatInt(now.Add(TokenTTL).Unix(), 10)
	return probePrefix + exp + "." + mac(k.probe, "probe", exp)
}

// VerifyProbe reports why a probe token is refused, or nil.
func (k Keys) VerifyProbe(token string, now time.Time) error {
	rest, ok := strings.CutPrefix(token, probePrefix)
	if !ok || len(k.probe) == 0 {
		return ErrMalformed
	}
	expText, sig, ok := strings.Cut(rest, ".")
	exp, err := strconv.ParseInt(expText, 10, 64)
	if !ok || err != nil {
		return ErrMalformed
	}
	if !hmac.Equal([]byte(sig), []byte(mac(k.probe, "probe", expText))) {
		return ErrSignature
	}
	return checkExpiry(exp, now)
}

// Prove answers region asker's nonce as region self.
func (k Keys) Prove(self, asker, nonce string) string {
	return mac(k.identity, "identity", self, asker, nonce)
}

// CheckProof reports whether proof answers asker's nonce as region name.
func (k Keys) CheckProof(name, asker, nonce, proof string) bool {
	return len(k.identity) > 0 && hmac.Equal([]byte(proof), []byte(k.Prove(name, asker, nonce)))
}

// CanSign reports whether k holds the region keys (a region's, not the
// front door's).
func (k Keys) CanSign() bool { return len(k.peer) > 0 }
