package auth

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/georeg/georeg/internal/ocierr"
)

// Failed logins are limited per client address and per name, so password
// guessing is slow and a flood costs neither bcrypt nor audit writes once
// it is refused. Successful logins take nothing from the budgets.
const (
	failuresPerAddress     = 20               // burst of failed logins from one address
	addressRefill          = 5 * time.Second  // one more failure allowed per this
	failuresPerName        = 10               // burst of failed logins for one name
	nameRefill             = 10 * time.Second // one more failure allowed per this
	maxLimited             = 10_000           // addresses (and names) tracked at once
	failureAuditWindow     = time.Minute      // failures of one name within it make one audit record
	failureAuditFlushEvery = 10 * time.Second // how often Run writes the aggregated records
)

// loginGuard holds the failure budgets and the failures not yet audited.
type loginGuard struct {
	mu        sync.Mutex
	addresses map[netip.Addr]*rate.Limiter
	names     map[string]*rate.Limiter
	pending   map[string]*failures // by name: failures since the last record
}

// failures are one name's failed logins since its last audit record.
type failures struct {
	since time.Time
	count int
	from  map[string]bool // client addresses
	how   string
}

func newLoginGuard() *loginGuard {
	return &loginGuard{addresses: map[netip.Addr]*rate.Limiter{}, names: map[string]*rate.Limiter{}, pending: map[string]*failures{}}
}

// blocked returns how long the client at addr must wait before name may
// fail again, or 0.
func (g *loginGuard) blocked(addr netip.Addr, name string, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	var wait time.Duration
	if l := g.addresses[addr]; l != nil && l.TokensAt(now) < 1 {
		wait = max(wait, refillIn(l, now))
	}
	if l := g.names[name]; l != nil && l.TokensAt(now) < 1 {
		wait = max(wait, refillIn(l, now))
	}
	return wait
}

func refillIn(l *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - l.TokensAt(now)
	return time.Duration(missing / float64(l.Limit()) * float64(time.Second))
}

// failed counts a failed login of name from addr against both budgets.
func (g *loginGuard) failed(addr netip.Addr, name string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	take(g.addresses, addr, rate.Every(addressRefill), failuresPerAddress, now)
	take(g.names, name, rate.Every(nameRefill), failuresPerName, now)
}

// take spends one from key's budget, making it when new; a full map first
// forgets the budgets that have refilled (they are as good as new).
func take[K comparable](m map[K]*rate.Limiter, key K, every rate.Limit, burst int, now time.Time) {
	l := m[key]
	if l == nil {
		if len(m) >= maxLimited {
			for k, v := range m {
				if v.TokensAt(now) >= float64(v.Burst()) {
					delete(m, k)
				}
			}
			if len(m) >= maxLimited {
				clear(m) // a flood from more addresses than tracked: start over
			}
		}
		l = rate.NewLimiter(every, burst)
		m[key] = l
	}
	l.AllowN(now, 1)
}

// noteFailure aggregates a failed login for the audit log. It returns
// true when this failure is the first of name's window: the caller writes
// it at once; the others are written together by flush.
func (g *loginGuard) noteFailure(name, addr, how string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.pending[name]
	if f == nil {
		if len(g.pending) >= maxLimited {
			return false // counted nowhere rather than unbounded memory
		}
		g.pending[name] = &failures{since: now, from: map[string]bool{}, how: how}
		return true
	}
	f.count++
	if len(f.from) < 5 {
		f.from[addr] = true
	}
	return false
}

// due returns the aggregated records whose window ended by now (all of
// them when final), and forgets them.
func (g *loginGuard) due(now time.Time, final bool) map[string]*failures {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]*failures{}
	for name, f := range g.pending {
		if final || now.Sub(f.since) >= failureAuditWindow {
			delete(g.pending, name)
			if f.count > 0 {
				out[name] = f
			}
		}
	}
	return out
}

// login authenticates name by password for r (how says by which means,
// for the audit log): a name no user or token can have is refused without
// bcrypt or audit; a client or name over its failure budget gets
// TOOMANYREQUESTS with Retry-After before any check; a failure is
// counted, and audited once per name and window.
func (s *Service) login(r *http.Request, name, password, how string) (*Principal, error) {
	ctx := r.Context()
	if !nameRegexp.MatchString(name) {
		return nil, ocierr.Unauthorized.Withf("%v", ErrCredentials)
	}
	addr, _ := s.ClientAddr(r)
	now := s.now()
	if wait := s.guard.blocked(addr, name, now); wait > 0 {
		e := ocierr.TooManyRequests.Withf("too many failed logins from %s or for %q: retry in %s", addr, name, wait.Round(time.Second)+time.Second)
		e.RetryAfter = wait + time.Second
		return nil, e
	}
	p, err := s.Authenticate(ctx, name, password)
	if err != nil {
		s.guard.failed(addr, name, now)
		if s.guard.noteFailure(name, addr.String(), how, now) {
			s.recordLogin(ctx, name, "denied", how+" from "+addr.String())
		}
		return nil, ocierr.Unauthorized.Withf("%v", err)
	}
	return p, nil
}

// Run writes the aggregated failed-login records and keeps this region's
// signing keys (a rotation asked elsewhere, keys to retire: keys.go) until
// ctx ends, then writes the rest of the records.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(failureAuditFlushEvery)
	defer t.Stop()
	k := time.NewTicker(keysRefresh)
	defer k.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flushFailures(context.WithoutCancel(ctx), true)
			return nil
		case <-t.C:
			s.flushFailures(ctx, false)
		case <-k.C:
			if !s.cfg.Enabled {
				continue
			}
			if err := s.maintainKeys(ctx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "keep the token-signing keys", "error", err)
			}
		}
	}
}

func (s *Service) flushFailures(ctx context.Context, final bool) {
	for name, f := range s.guard.due(s.now(), final) {
		from := make([]string, 0, len(f.from))
		for a := range f.from {
			from = append(from, a)
		}
		sort.Strings(from)
		s.recordLogin(ctx, name, "denied", fmt.Sprintf("%s: %d more failed logins since %s, from %s",
			f.how, f.count, f.since.UTC().Format(time.RFC3339), strings.Join(from, ", ")))
	}
}
