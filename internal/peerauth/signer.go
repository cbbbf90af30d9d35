package peerauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// IdentityPath is where a region proves its name: GET
// IdentityPath?from=ASKER&nonce=N answers {"region": NAME, "proof": P}
// with P = Prove(NAME, ASKER, N). It needs no credential.
const IdentityPath = "/_georeg/v1/identity"

// Identity is the answer of IdentityPath.
type Identity struct {
	Region string `json:"region"`
	Proof  string `json:"proof"`
}

// ProvenFor is how long a proven endpoint is trusted before it is asked
// again.
const ProvenFor = 10 * time.Minute

// proveTimeout bounds one identity check.
const proveTimeout = 5 * time.Second

// ErrUnproven wraps every failure of an endpoint to prove its name: no
// credential was sent to it.
var ErrUnproven = errors.New("did not prove its identity; no credential was sent to it")

// Signer adds this region's token to requests to other regions, once
// their endpoint has proven which region it is.
type Signer struct {
	keys Keys
	self string
	http *http.Client
	now  func() time.Time

	mu     sync.Mutex
	proven map[string]provenEndpoint // endpoint base → who it proved to be
	tokens map[string]mintedToken    // region → its current token from self
}

type provenEndpoint struct {
	name  string
	until time.Time
}

type mintedToken struct {
	token string
	renew time.Time
}

// NewSigner returns the signer of region self, which asks endpoints to
// prove themselves over hc (bounded per check by a 5 s deadline).
func NewSigner(keys Keys, self string, hc *http.Client) *Signer {
	return &Signer{keys: keys, self: self, http: hc, now: time.Now,
		proven: map[string]provenEndpoint{}, tokens: map[string]mintedToken{}}
}

// WithClock makes s read time from now (tests).
func (s *Signer) WithClock(now func() time.Time) *Signer { s.now = now; return s }

// Authorize sets req's credential for region to, after req's endpoint
// proved it is region to. A request to an endpoint that cannot prove it
// gets no credential and an error wrapping ErrUnproven.
func (s *Signer) Authorize(ctx context.Context, req *http.Request, to string) error {
	if s == nil || !s.keys.CanSign() {
		return nil // replication off: nothing to present
	}
	base := req.URL.Scheme + "://" + req.URL.Host
	name, err := s.Identify(ctx, base)
	if err != nil {
		return err
	}
	if name != to {
		s.forget(base)
		return fmt.Errorf("endpoint %s is region %s, not %s: %w", base, name, to, ErrUnproven)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token(to))
	return nil
}

// Token returns this region's current token for region to.
func (s *Signer) Token(to string) string {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[to]; ok && now.Before(t.renew) {
		return t.token
	}
	t := mintedToken{token: s.keys.Token(s.self, to, now), renew: now.Add(TokenTTL / 2)}
	s.tokens[to] = t
	return t.token
}

// Identify returns the region the endpoint at base proves to be (asking
// it at most every ProvenFor).
func (s *Signer) Identify(ctx context.Context, base string) (string, error) {
	now := s.now()
	s.mu.Lock()
	p, ok := s.proven[base]
	s.mu.Unlock()
	if ok && now.Before(p.until) {
		return p.name, nil
	}
	name, err := s.ask(ctx, base)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.proven[base] = provenEndpoint{name: name, until: now.Add(ProvenFor)}
	s.mu.Unlock()
	return name, nil
}

func (s *Signer) forget(base string) {
	s.mu.Lock()
	delete(s.proven, base)
	s.mu.Unlock()
}

// ask sends a fresh nonce to base and checks its proof.
func (s *Signer) ask(ctx context.Context, base string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, proveTimeout)
	defer cancel()
	var b [16]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		base+IdentityPath+"?"+url.Values{"from": {s.self}, "nonce": {nonce}}.Encode(), nil)
	if err != nil {
		return "", err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("endpoint %s: %w: %w", base, ErrUnproven, err)
	}
	defer resp.Body.Close()
	var id Identity
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("endpoint %s answered %s to %s: %w", base, resp.Status, IdentityPath, ErrUnproven)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&id); err != nil {
		return "", fmt.Errorf("endpoint %s: unreadable identity: %w", base, ErrUnproven)
	}
	if !regionName.MatchString(id.Region) || !s.keys.CheckProof(id.Region, s.self, nonce, id.Proof) {
		return "", fmt.Errorf("endpoint %s: its proof does not match (not a region of this registry, or another replication secret): %w", base, ErrUnproven)
	}
	return id.Region, nil
}
