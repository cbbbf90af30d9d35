package auth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/auth"
)

// TestALoginFloodIsRefusedCheaply: 100 failed logins from one address
// (spread over names, so only the address budget stops them) are answered
// 429 with Retry-After after the budget's 20; the rest cost no bcrypt
// (the whole flood takes about 20 bcrypt checks) and the audit log gets
// one record per name, not per attempt; 60 more for one name from many
// addresses are stopped by the name's budget. A name no user or token can
// have (over 50 characters) is refused before bcrypt and never audited.
// The right password still works from another address.
func TestALoginFloodIsRefusedCheaply(t *testing.T) {
	s, _ := openAuth(t)
	audit := recordAudit(s)
	h := s.TokenHandler()
	try := func(addr, user, pass string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/oauth2/token?service=georeg", nil)
		r.RemoteAddr = addr + ":40000"
		r.SetBasicAuth(user, pass)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	start := time.Now()
	var refused, denied int
	for i := range 100 {
		w := try("192.0.2.7", []string{"admin", "reader", "nobody"}[i%3], "guess")
		switch w.Code {
		case http.StatusTooManyRequests:
			refused++
			if w.Header().Get("Retry-After") == "" {
				t.Fatal("a 429 without Retry-After")
			}
		case http.StatusUnauthorized:
			denied++
		default:
			t.Fatalf("attempt %d: %d %s", i, w.Code, w.Body)
		}
	}
	t.Logf("100 failed logins from one address: %d answered 401 (bcrypt), %d 429, in %s", denied, refused, time.Since(start).Round(time.Millisecond))
	if denied > 20 || refused < 80 {
		t.Fatalf("%d checked, %d refused; want at most 20 checked", denied, refused)
	}
	for i := range 60 {
		try(fmt.Sprintf("198.51.100.%d", i+1), "admin", "guess")
	}
	if w := try("203.0.113.9", "admin", "guess"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("a name guessed from 60 addresses, from a 61st: %d", w.Code)
	}
	long := strings.Repeat("x", 1<<20)
	if w := try("203.0.113.10", long, "guess"); w.Code != http.StatusUnauthorized {
		t.Fatalf("a 1 MiB name: %d", w.Code)
	}
	if w := try("203.0.113.11", "reader", "reader-pass"); w.Code != http.StatusOK {
		t.Fatalf("the right password from another address: %d %s", w.Code, w.Body)
	}
	audited := audit()
	denials := 0
	for _, a := range audited {
		if strings.Contains(a, strings.Repeat("x", 51)) {
			t.Fatal("a name no one can have was audited")
		}
		if strings.Contains(a, " denied ") {
			denials++
		}
	}
	if denials > 3 {
		t.Fatalf("%d audit records of failed logins for 3 names, want one each:\n%s", denials, strings.Join(audited, "\n"))
	}
}

// TestFailedLoginsAreAuditedTogether: the failures after a name's first
// in its minute are written as one record, with their count and
// addresses, when the service stops.
func TestFailedLoginsAreAuditedTogether(t *testing.T) {
	s, _ := openAuth(t)
	audit := recordAudit(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for _, addr := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.2", "192.0.2.3"} {
		r := httptest.NewRequest(http.MethodGet, "/_georeg/v1/replications", nil)
		r.RemoteAddr = addr + ":1"
		r.SetBasicAuth("admin", "wrong")
		if _, err := s.Admin(httptest.NewRecorder(), r); err == nil {
			t.Fatal("a wrong password passed")
		}
	}
	cancel()
	<-done
	audited := audit()
	if len(audited) != 2 || !strings.Contains(audited[1], "3 more failed logins") || !strings.Contains(audited[1], "192.0.2.2, 192.0.2.3") {
		t.Fatalf("audit records:\n%s", strings.Join(audited, "\n"))
	}
}

// recordAudit has s's login audit records kept ("actor outcome detail")
// and returns what has been recorded so far.
func recordAudit(s *auth.Service) func() []string {
	var mu sync.Mutex
	var audited []string
	s.SetAudit(func(_ context.Context, actor, outcome, detail string) {
		mu.Lock()
		audited = append(audited, actor+" "+outcome+" "+detail)
		mu.Unlock()
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), audited...)
	}
}
