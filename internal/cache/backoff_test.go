package cache

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestARevalidationBacksOffAndHonoursRetryAfter: after a success the next
// check is an interval away; after failures the wait doubles from 5 s up
// to the interval, and is never shorter than the upstream's Retry-After
// (itself capped at a day).
func TestARevalidationBacksOffAndHonoursRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name       string
		interval   time.Duration
		failures   int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"a success: the interval", time.Hour, 0, 0, time.Hour},
		{"a success ignores an old Retry-After", time.Hour, 0, 30 * time.Minute, time.Hour},
		{"first failure: 5 s", time.Hour, 1, 0, 5 * time.Second},
		{"third failure: 20 s", time.Hour, 3, 0, 20 * time.Second},
		{"many failures: the interval at most", time.Hour, 40, 0, time.Hour},
		{"a short interval bounds the backoff", time.Second, 1, 0, time.Second},
		{"Retry-After longer than the backoff wins", time.Second, 1, 8 * time.Second, 8 * time.Second},
		{"Retry-After shorter than the backoff does not shorten it", time.Hour, 3, time.Second, 20 * time.Second},
		{"Retry-After beyond a day is capped", time.Hour, 1, 72 * time.Hour, 24 * time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := nextCheck(now, c.interval, c.failures, c.retryAfter).Sub(now); got != c.want {
				t.Fatalf("next check in %s, want %s", got, c.want)
			}
		})
	}
}

func TestRetryAfterIsReadAsSecondsOrADate(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"8", 8 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{"-3", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{"Fri, 04 Dec 2026 10:01:00 GMT", time.Minute, true},
		{"Fri, 04 Dec 2026 09:00:00 GMT", 0, true}, // a date passed: no wait
		{"99999999999999999999", 0, false},
		{"9999999999", 24 * time.Hour, true},
	} {
		got, ok := parseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("parseRetryAfter(%q) = %s %v, want %s %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// TestTheRecorderKeepsTheLongestRetryAfterOfRefusals: only 429 and 503
// answers count.
func TestTheRecorderKeepsTheLongestRetryAfterOfRefusals(t *testing.T) {
	answers := []struct {
		code int
		ra   string
	}{{http.StatusTooManyRequests, "3"}, {http.StatusServiceUnavailable, "7"}, {http.StatusInternalServerError, "60"}, {http.StatusOK, "90"}, {http.StatusTooManyRequests, "2"}}
	i := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answers[i]
		i++
		w.Header().Set("Retry-After", a.ra)
		w.WriteHeader(a.code)
	}))
	defer srv.Close()
	rec := &retryAfterRecorder{next: srv.Client().Transport}
	for range answers {
		req, _ := http.NewRequest(http.MethodHead, srv.URL, nil)
		resp, err := rec.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := rec.asked(); got != 7*time.Second {
		t.Fatalf("asked %s, want 7s", got)
	}
}
