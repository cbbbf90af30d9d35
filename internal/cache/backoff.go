package cache

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The schedule of a cached tag's revalidation: after a check that
// succeeded, the rule's interval; after failures, a backoff that doubles
// from firstBackoff up to the interval, and never sooner than the
// upstream's Retry-After asked (capped at maxRetryAfter: an upstream
// cannot silence revalidation for days).
const (
	firstBackoff  = 5 * time.Second
	maxRetryAfter = 24 * time.Hour
)

// nextCheck is when a tag is next asked upstream: after a success at now
// (failures 0), or after its failures-th failure in a row, the last one
// answered with retryAfter (0: none).
func nextCheck(now time.Time, interval time.Duration, failures int, retryAfter time.Duration) time.Time {
	if failures <= 0 {
		return now.Add(interval)
	}
	wait := min(interval, firstBackoff<<min(failures-1, 20))
	return now.Add(max(wait, min(retryAfter, maxRetryAfter)))
}

// parseRetryAfter reads a Retry-After header (RFC 9110: delay-seconds or
// an HTTP date) as the wait from now; ok false when it is absent or
// malformed.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// retryAfterRecorder is a transport that notes the longest Retry-After of
// the upstream's 429 and 503 answers: go-containerregistry's errors do
// not carry the header.
type retryAfterRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	wait time.Duration
}

func (r *retryAfterRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			r.mu.Lock()
			r.wait = max(r.wait, d)
			r.mu.Unlock()
		}
	}
	return resp, err
}

// asked is the longest Retry-After noted.
func (r *retryAfterRecorder) asked() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wait
}
