package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
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
	// AppliedMarks is how far the region has applied each peer's feed in
	// order (meta.DB.AppliedMarks).
	AppliedMarks(ctx context.Context) (map[string]int64, error)
	// FeedFloor is the seq through which the feed was compacted (0: never).
	FeedFloor(ctx context.Context) (int64, error)
}

// FloorHeader, on a FEED_COMPACTED answer, names the seq through which
// the feed was compacted: the peer starts after it once it repaired.
const FloorHeader = "Georeg-Feed-Floor"

// StatsPath answers how much of the feed follows a seq, for progress.
const StatsPath = "/_georeg/v1/feed/stats"

// Stats is the answer of StatsPath?since=N.
type Stats struct {
	Head       int64 `json:"head"`       // newest record
	Bytes      int64 `json:"bytes"`      // size of every blob record
	BytesAfter int64 `json:"bytesAfter"` // size of the blob records after since
	// Applied is how far the region has applied each other region's feed
	// in order: a manifest whose mark in origin's feed is at most
	// Applied[origin] is held there (meta.Present). One number per
	// region replaces an acknowledgement record per manifest.
	Applied map[string]int64 `json:"applied,omitempty"`
}

// StatsHandler serves GET StatsPath to requests authorized admits (a
// member region's token: peerauth.Verifier.Authorized).
func StatsHandler(src Source, authorized func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r) {
			ocierr.Write(w, r, ocierr.Unauthorized.Withf("feed stats are for member regions: send a region token (peerauth)"))
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
		if err == nil {
			st.Applied, err = src.AppliedMarks(r.Context())
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

// Handler serves GET Path to requests authorized admits (a member
// region's token: peerauth.Verifier.Authorized).
func Handler(src Source, authorized func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := serve(w, r, src, authorized); err != nil {
			oe, _ := ocierr.From(err)
			ocierr.Write(w, r, oe)
		}
	})
}

func serve(w http.ResponseWriter, r *http.Request, src Source, authorized func(*http.Request) bool) error {
	if r.Method != http.MethodGet {
		return ocierr.Unsupported.Withf("the feed answers GET only")
	}
	if !authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="georeg-replication"`)
		return ocierr.Unauthorized.Withf("the feed is for member regions: send a region token (peerauth) minted for this region")
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
	compacted := func() error {
		floor, err := src.FeedFloor(r.Context())
		if err != nil {
			return err
		}
		if since < floor {
			w.Header().Set(FloorHeader, strconv.FormatInt(floor, 10))
			return ocierr.FeedCompacted.WithDetail(fmt.Sprintf("records %d to %d of %s's feed were compacted away, once every region had applied them; repair from its state (anti-entropy), then follow from %d", since+1, floor, src.Name(), floor),
				map[string]int64{"floor": floor})
		}
		return nil
	}
	if err := compacted(); err != nil {
		return err
	}
	recs, err := src.Feed(r.Context(), since, limit, wait)
	if err != nil {
		return err
	}
	// A compaction between the floor's read and the records' would leave
	// a gap at the page's start: read the floor again (it is moved with
	// the deletes, in one transaction).
	if err := compacted(); err != nil {
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
