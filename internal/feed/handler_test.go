package feed

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/meta"
)

// compactingSource is a feed compacted through 100 while its records
// after since are read: the floor read before them says 0, the one
// after says 100, and the records read start at 101.
type compactingSource struct{ read bool }

func (s *compactingSource) Name() string { return "eastus" }
func (s *compactingSource) Feed(ctx context.Context, since int64, n int, wait time.Duration) ([]meta.Record, error) {
	s.read = true
	return []meta.Record{{Seq: 101, Kind: meta.KindTagDelete, Repo: "a", Tag: "v1"}}, nil
}
func (s *compactingSource) FeedHead(context.Context) (int64, error) { return 101, nil }
func (s *compactingSource) FeedBytes(context.Context, int64) (int64, int64, error) {
	return 0, 0, nil
}
func (s *compactingSource) EverReady(context.Context) (bool, error) { return true, nil }
func (s *compactingSource) AppliedMarks(context.Context) (map[string]int64, error) {
	return nil, nil
}
func (s *compactingSource) FeedFloor(context.Context) (int64, error) {
	if s.read {
		return 100, nil
	}
	return 0, nil
}

// TestAPageReadAsTheFeedIsCompactedIsRefusedNotServedWithAGap: records
// 11 to 100 went while the page was read; serving 101 to a follower at
// 10 would skip them for good. It is told the feed was compacted.
func TestAPageReadAsTheFeedIsCompactedIsRefusedNotServedWithAGap(t *testing.T) {
	h := Handler(&compactingSource{}, func(*http.Request) bool { return true })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/_georeg/v1/feed?since=10", nil))
	if rec.Code != http.StatusGone || rec.Header().Get(FloorHeader) != "100" {
		t.Fatalf("%d %s %q; want 410 FEED_COMPACTED with floor 100", rec.Code, rec.Body, rec.Header().Get(FloorHeader))
	}
}
