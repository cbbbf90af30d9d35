package peerauth

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/georeg/georeg/internal/ocierr"
)

// Membership reports whether name is a region of the registry as this
// region knows it now.
type Membership func(ctx context.Context, name string) bool

// Verifier checks the credentials other regions and the front door
// present to region self.
type Verifier struct {
	keys    Keys
	self    string
	now     func() time.Time
	log     *slog.Logger
	members atomic.Pointer[Membership]
}

// NewVerifier returns the verifier of region self. Until SetMembership,
// no region is a member (a region with replication on sets it at once).
func NewVerifier(keys Keys, self string, log *slog.Logger) *Verifier {
	return &Verifier{keys: keys, self: self, now: time.Now, log: log}
}

// WithClock makes v read time from now (tests).
func (v *Verifier) WithClock(now func() time.Time) *Verifier { v.now = now; return v }

// SetMembership sets how v learns the registry's regions.
func (v *Verifier) SetMembership(m Membership) { v.members.Store(&m) }

// JoinPath is the one request a region that is not yet a member may make
// with a valid token: registering itself (PUT JoinPath+its name), as
// `georeg serve --join` does.
const JoinPath = "/_georeg/v1/replications/"

// Peer returns the region whose token authorizes r: addressed to this
// region, unexpired, signed with this registry's peer key, and minted by
// a member (or by a region registering itself).
func (v *Verifier) Peer(r *http.Request) (string, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if v == nil || !ok || !strings.HasPrefix(token, peerPrefix) {
		return "", false
	}
	from, err := v.keys.Verify(token, v.self, v.now())
	if err != nil {
		v.log.WarnContext(r.Context(), "refused a region token", "error", err, "remote", r.RemoteAddr, "path", r.URL.Path)
		return "", false
	}
	if from == v.self {
		return from, true // this region's other nodes
	}
	if m := v.members.Load(); m != nil && (*m)(r.Context(), from) {
		return from, true
	}
	if r.Method == http.MethodPut && r.URL.Path == JoinPath+from {
		return from, true
	}
	v.log.WarnContext(r.Context(), "refused a token of a region that is not a member", "region", from, "remote", r.RemoteAddr, "path", r.URL.Path)
	return "", false
}

// Authorized reports whether r carries a member region's token.
func (v *Verifier) Authorized(r *http.Request) bool {
	_, ok := v.Peer(r)
	return ok
}

// Probe reports whether r carries a member region's or the front door's
// token: enough to read health and replication state.
func (v *Verifier) Probe(r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if v == nil || !ok {
		return false
	}
	if strings.HasPrefix(token, probePrefix) {
		return v.keys.VerifyProbe(token, v.now()) == nil
	}
	return v.Authorized(r)
}

// IdentityHandler serves GET IdentityPath: this region proves its name to
// an asking region (any caller: the proof reveals nothing but the name).
func (v *Verifier) IdentityHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		from, nonce := q.Get("from"), q.Get("nonce")
		if !regionName.MatchString(from) || len(nonce) < 16 || len(nonce) > 128 {
			ocierr.Write(w, r, ocierr.Unsupported.Withf("identity: give from=REGION and nonce= (16 to 128 characters)"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(Identity{Region: v.self, Proof: v.keys.Prove(v.self, from, nonce)})
	})
}
