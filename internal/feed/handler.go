package feed

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// Source is what the handler reads: the region's feed.
type Source interface {
	Name() string
	Feed(ctx context.Context, since int64, n int, wait time.Duration) ([]meta.Record, error)
	FeedHead(ctx context.Context) (int64, error)
	FeedBytes(ctx context.Context, since int64) (total, after int64, err error)
	EverReady(ctx context.Context) (bool, error)
}

// StatsPath answers how much of the feed follows a seq, for progress.
const StatsPath = "/_georeg/v1/feed/stats"

// Stats is the answer of StatsPath?since=N.
type Stats struct {
	Head       int64 `json:"head"`       // newest record
	Bytes      int64 `json:"bytes"`      // size of every blob record
	BytesAfter int64 `json:"bytesAfter"` // size of the blob records after since
}

// StatsHandler serves GET StatsPath for peers holding secret.
func StatsHandler(src Source, secret string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Authorized(r, secret) {
			ocierr.Write(w, r, ocierr.Unauthorized.Withf("feed stats are for peer regions: send the replication secret"))
			return
		}
		since, err := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
		if err != nil || since < 0 {
			ocierr.Write(w, r, ocierr.PaginationNumberInvalid.Withf("since must be a non-negative integer"))
			return
		}
		head, err := src.FeedHead(r.Context())
		var st Stats
		if err == nil {
			st.Bytes, st.BytesAfter, err = src.FeedBytes(r.Context(), since)
		}
		if err != nil {
			oe, _ := ocierr.From(err)
			ocierr.Write(w, r, oe)
			return
		}
		st.Head = head
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
}

// Limits of one request.
const (
	DefaultLimit = 500
	MaxLimit     = 5000
	MaxWait      = 60 * time.Second
)

// Handler serves GET Path for peers holding secret.
func Handler(src Source, secret string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := serve(w, r, src, secret); err != nil {
			oe, _ := ocierr.From(err)
			ocierr.Write(w, r, oe)
		}
	})
}

// Authorized reports whether r carries the replication secret. An empty
// secret authorizes nobody: replication is off until one is configured.
func Authorized(r *http.Request, secret string) bool {
	name, ok := Peer(r, secret)
	return ok && name != FrontDoor
}

// FrontDoor is the name in the credential the front door presents. It
// probes regions (health, replication state, routing flags) with it and
// may do nothing else: Authorized refuses it, Probe admits it. No region
// may bear it (region.ReservedName).
const FrontDoor = "frontdoor"

// Probe reports whether r carries a region's or the front door's
// credential: enough to read a region's health and replication state.
func Probe(r *http.Request, secret string) bool {
	_, ok := Peer(r, secret)
	return ok
}

// Key derives a key for purpose from the replication secret, apart from
// every credential (a credential is never a key, a key never a
// credential).
func Key(secret, purpose string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("georeg-key:" + purpose))
	return m.Sum(nil)
}

// regionName is the form of a region's name (and of FrontDoor).
var regionName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// peerPrefix starts every peer credential, so one is never taken for a
// user's token (or the reverse).
const peerPrefix = "georeg-peer."

// Credential is the bearer token region presents to its peers: its name
// and an HMAC-SHA256 of it under the registry's replication secret. Each
// region has its own, the secret itself never crosses the network, and a
// peer knows who is asking.
func Credential(secret, region string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("georeg-peer:" + region))
	return peerPrefix + region + "." + hex.EncodeToString(m.Sum(nil))
}

// Peer returns the region whose credential authorizes r, checked in
// constant time.
func Peer(r *http.Request, secret string) (string, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || secret == "" || !strings.HasPrefix(token, peerPrefix) {
		return "", false
	}
	rest := token[len(peerPrefix):]
	i := strings.LastIndex(rest, ".")
	if i <= 0 {
		return "", false
	}
	region := rest[:i]
	if !regionName.MatchString(region) {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(Credential(secret, region))) != 1 {
		return "", false
	}
	return region, true
}

func serve(w http.ResponseWriter, r *http.Request, src Source, secret string) error {
	if r.Method != http.MethodGet {
		return ocierr.Unsupported.Withf("the feed answers GET only")
	}
	if !Authorized(r, secret) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="georeg-replication"`)
		return ocierr.Unauthorized.Withf("the feed is for peer regions: send this region's peer credential (feed.Credential of the replication secret) as a bearer token")
	}
	q := r.URL.Query()
	since, err1 := strconv.ParseInt(q.Get("since"), 10, 64)
	if q.Get("since") == "" {
		since, err1 = 0, nil
	}
	limit, err2 := strconv.Atoi(q.Get("limit"))
	if q.Get("limit") == "" {
		limit, err2 = DefaultLimit, nil
	}
	wait, err3 := time.ParseDuration(q.Get("wait"))
	if q.Get("wait") == "" {
		wait, err3 = 0, nil
	}
	if err1 != nil || err2 != nil || err3 != nil || since < 0 || limit <= 0 || wait < 0 {
		return ocierr.PaginationNumberInvalid.Withf("since must be a non-negative integer, limit a positive integer, wait a duration such as 30s")
	}
	limit, wait = min(limit, MaxLimit), min(wait, MaxWait)
	recs, err := src.Feed(r.Context(), since, limit, wait)
	if err != nil {
		return err
	}
	head, err := src.FeedHead(r.Context())
	if err != nil {
		return err
	}
	ready, err := src.EverReady(r.Context())
	if err != nil {
		return err
	}
	page := Page{Region: src.Name(), Head: head, Records: make([]Record, 0, len(recs)), Ready: ready}
	for _, rec := range recs {
		page.Records = append(page.Records, FromMeta(rec))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(page)
}
