package replicate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/bounded"
	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

func ver(t int64) *hlc.Version { return &hlc.Version{Time: t, Region: "westeurope"} }

func TestPlanRecordDecidesFromWhatTheRegionHolds(t *testing.T) {
	rec := func(kind string, t int64) meta.Record {
		return meta.Record{Kind: kind, Version: hlc.Version{Time: t, Region: "eastus"}}
	}
	for _, tc := range []struct {
		name string
		rec  meta.Record
		l    local
		want action
	}{
		{"a blob nobody deleted is fetched", rec(meta.KindBlob, 10), local{}, actFetch},
		{"a blob whose bytes are here is only linked", rec(meta.KindBlob, 10), local{ContentHeld: true}, actStore},
		{"a blob deleted here later is skipped, not fetched", rec(meta.KindBlob, 10), local{Tombstone: ver(20)}, actSkip},
		{"a blob deleted here later whose bytes are here is left to the link's transaction, which keeps the delete", rec(meta.KindBlob, 10), local{ContentHeld: true, Tombstone: ver(20)}, actStore},
		{"a blob pushed after its delete here is fetched", rec(meta.KindBlob, 30), local{Tombstone: ver(20)}, actFetch},
		{"a blob deleted here at the same time by a later region name is skipped", rec(meta.KindBlob, 20), local{Tombstone: ver(20)}, actSkip},
		{"a blob of an on-demand cached repository is not fetched", rec(meta.KindBlob, 10), local{OnDemand: true}, actSkip},
		{"a blob of an on-demand cached repository whose bytes are here is linked", rec(meta.KindBlob, 10), local{OnDemand: true, ContentHeld: true}, actStore},
		{"a small blob of an on-demand cached repository that came in the feed page is stored", meta.Record{Kind: meta.KindBlob, Version: hlc.Version{Time: 10, Region: "eastus"}, Data: []byte("{}")}, local{OnDemand: true}, actFetch},
		{"a manifest held here moves its version", rec(meta.KindManifest, 10), local{ManifestLive: true}, actHeld},
		{"a manifest deleted here later is skipped", rec(meta.KindManifest, 10), local{Tombstone: ver(20)}, actSkip},
		{"a manifest pushed again after its delete is fetched", rec(meta.KindManifest, 30), local{Tombstone: ver(20)}, actFetch},
		{"a manifest never seen is fetched", rec(meta.KindManifest, 10), local{}, actFetch},
		{"a tag delete applies", rec(meta.KindTagDelete, 10), local{}, actApply},
		{"an ack applies", rec(meta.KindAck, 10), local{ManifestLive: true}, actApply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planRecord(tc.rec, tc.l); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// fetchScript runs a fetchPlan against a scripted set of peers: which
// hold the blob, and what each fetch from each does, in turn ("ok",
// "stall", "gone", "refused"). It returns the steps taken, as text.
func fetchScript(origin string, order []string, size int64, holds map[string]bool, outcomes map[string][]string) ([]string, bool) {
	plan := newFetchPlan(origin, order, size)
	var steps []string
	for range 50 { // bounded: the plan must end by itself well before
		st := plan.next()
		if len(st.ask) > 0 {
			steps = append(steps, "ask "+strings.Join(st.ask, ","))
			for _, p := range st.ask {
				plan.asked(p, holds[p])
			}
			continue
		}
		if st.from == "" {
			steps = append(steps, "give up")
			return steps, false
		}
		out := "ok"
		if list := outcomes[st.from]; len(list) > 0 {
			out, outcomes[st.from] = list[0], list[1:]
		}
		steps = append(steps, st.from+":"+out)
		switch out {
		case "ok":
			return steps, true
		case "stall":
			plan.failedFrom(st.from, fmt.Errorf("%w: %w", errPeer, bounded.ErrStalled))
		case "gone":
			plan.failedFrom(st.from, errGone)
		default:
			plan.failedFrom(st.from, fmt.Errorf("%w: connection refused", errPeer))
		}
	}
	return append(steps, "did not end"), false
}

func TestAFetchPlanResumesElsewhereAndEnds(t *testing.T) {
	order := []string{"westeurope", "eastus", "southeastasia"} // nearest first, from this region
	for _, tc := range []struct {
		name     string
		origin   string
		size     int64
		holds    map[string]bool
		outcomes map[string][]string
		want     string
		ok       bool
	}{
		{"a small blob comes from its origin at once", "eastus", 1000, nil, nil, "eastus:ok", true},
		{"a large blob is asked of nearer regions first and comes from the nearest holder", "eastus", 10 << 20,
			map[string]bool{"westeurope": true}, nil, "ask westeurope; westeurope:ok", true},
		{"a large blob no nearer region holds comes from its origin", "eastus", 10 << 20,
			map[string]bool{}, nil, "ask westeurope; eastus:ok", true},
		{"a stalled transfer resumes from another region that holds the blob", "eastus", 1000,
			map[string]bool{"southeastasia": true}, map[string][]string{"eastus": {"stall"}},
			"eastus:stall; ask westeurope,southeastasia; southeastasia:ok", true},
		{"with no other holder the origin is tried again, then the plan gives up", "eastus", 1000,
			map[string]bool{}, map[string][]string{"eastus": {"stall", "stall"}},
			"eastus:stall; ask westeurope,southeastasia; eastus:stall; give up", false},
		{"the fewest failures go first, nearest on a tie", "southeastasia", 1000,
			map[string]bool{"westeurope": true, "eastus": true}, map[string][]string{"southeastasia": {"refused"}, "westeurope": {"stall"}},
			"southeastasia:refused; ask westeurope,eastus; westeurope:stall; eastus:ok", true},
		{"an origin that deleted the blob ends the plan", "eastus", 1000, nil, map[string][]string{"eastus": {"gone"}},
			"eastus:gone; give up", false},
		{"a plan never makes more than its bound of attempts", "eastus", 1000,
			map[string]bool{"westeurope": true, "southeastasia": true},
			map[string][]string{"eastus": {"stall", "stall"}, "westeurope": {"stall", "stall"}, "southeastasia": {"stall", "stall"}},
			"eastus:stall; ask westeurope,southeastasia; westeurope:stall; southeastasia:stall; westeurope:stall; eastus:stall; southeastasia:stall; give up", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, ok := fetchScript(tc.origin, order, tc.size, tc.holds, tc.outcomes)
			if got := strings.Join(steps, "; "); got != tc.want || ok != tc.ok {
				t.Fatalf("steps:\n  %s (ok %t)\nwant:\n  %s (ok %t)", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestAFetchPlanAtItsBoundaries: the sizes, counts and peers where the
// plan's choices change.
func TestAFetchPlanAtItsBoundaries(t *testing.T) {
	four := []string{"westeurope", "eastus", "southeastasia", "brazilsouth"}
	allStall := map[string][]string{"eastus": {"stall", "stall"}, "westeurope": {"stall", "stall"},
		"southeastasia": {"stall", "stall"}, "brazilsouth": {"stall", "stall"}}
	for _, tc := range []struct {
		name     string
		origin   string
		order    []string
		size     int64
		holds    map[string]bool
		outcomes map[string][]string
		want     string
		ok       bool
	}{
		{"a blob of exactly 1 MiB is asked of nearer regions", "eastus", []string{"westeurope", "eastus"}, 1 << 20,
			map[string]bool{"westeurope": true}, nil, "ask westeurope; westeurope:ok", true},
		{"one byte less comes from its origin at once", "eastus", []string{"westeurope", "eastus"}, 1<<20 - 1,
			map[string]bool{"westeurope": true}, nil, "eastus:ok", true},
		{"six attempts in all, though four regions could take two each", "eastus", four, 1000,
			map[string]bool{"westeurope": true, "southeastasia": true, "brazilsouth": true}, allStall,
			"eastus:stall; ask westeurope,southeastasia,brazilsouth; westeurope:stall; southeastasia:stall; brazilsouth:stall; westeurope:stall; eastus:stall; give up", false},
		{"an origin no longer among the peers is still asked, twice at most", "centralus", []string{"westeurope"}, 1000,
			map[string]bool{}, map[string][]string{"centralus": {"stall", "stall"}},
			"centralus:stall; ask westeurope; centralus:stall; give up", false},
		{"an origin no longer among the peers that deleted the blob is not asked again", "centralus", []string{"westeurope"}, 1000,
			map[string]bool{}, map[string][]string{"centralus": {"gone"}},
			"centralus:gone; give up", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, ok := fetchScript(tc.origin, tc.order, tc.size, tc.holds, tc.outcomes)
			if got := strings.Join(steps, "; "); got != tc.want || ok != tc.ok {
				t.Fatalf("steps:\n  %s (ok %t)\nwant:\n  %s (ok %t)", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestFailuresAreParkedOnlyWhenThePeerIsTheCause(t *testing.T) {
	stalled := fmt.Errorf("%w: %w", errPeer, bounded.ErrStalled)
	full := fmt.Errorf("fetch: %w", fmt.Errorf("%w: %w", content.ErrWrite, syscall.ENOSPC))
	for _, tc := range []struct {
		name       string
		kind       string
		err        error
		failingFor time.Duration
		want       bool
	}{
		{"a blob the peer stalls on for long enough", meta.KindBlob, stalled, time.Minute, true},
		{"not before parkAfter", meta.KindBlob, stalled, time.Second, false},
		{"at parkAfter exactly", meta.KindBlob, stalled, 30 * time.Second, true},
		{"a manifest whose bytes do not verify", meta.KindManifest, fmt.Errorf("x: %w", content.ErrDigestMismatch), time.Minute, true},
		{"a tag whose manifest the peer refuses", meta.KindTag, fmt.Errorf("%w: 503", errPeer), time.Minute, true},
		{"never a full disk here: everything would fail the same", meta.KindBlob, full, time.Hour, false},
		{"never a delete: it has no content to fetch", meta.KindTagDelete, stalled, time.Hour, false},
		{"never a setting", meta.KindSetting, stalled, time.Hour, false},
		{"never an error of this region's database", meta.KindBlob, errors.New("database is locked"), time.Hour, false},
		{"never a cancelled context", meta.KindBlob, context.Canceled, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parkable(tc.kind, tc.err, tc.failingFor, 30*time.Second); got != tc.want {
				t.Fatalf("parkable = %t, want %t", got, tc.want)
			}
		})
	}
}

func TestRetriesBackOffToABound(t *testing.T) {
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	for i, w := range want {
		if got := retryIn(i + 1); got != w {
			t.Fatalf("retry %d in %s, want %s", i+1, got, w)
		}
	}
	if got := retryIn(100); got != maxBackoff {
		t.Fatalf("retry 100 in %s, want the bound %s", got, maxBackoff)
	}
}

// TestAPeersFeedIsAskedAgainWithinTheLimit: waits double from 100 ms; a
// follower's requests to a peer stop doubling at peerRetryMax (a healed
// link is used within it), other retries at maxBackoff.
func TestAPeersFeedIsAskedAgainWithinTheLimit(t *testing.T) {
	feed, other := backoff{limit: peerRetryMax}, backoff{}
	var lastFeed, lastOther time.Duration
	for i := range 20 {
		f, o := feed.step(), other.step()
		if i == 0 && (f != minBackoff || o != minBackoff) {
			t.Fatalf("first waits %s and %s, want %s", f, o, minBackoff)
		}
		if f > peerRetryMax || o > maxBackoff || f < lastFeed || o < lastOther {
			t.Fatalf("step %d: waits %s and %s (before %s and %s)", i, f, o, lastFeed, lastOther)
		}
		lastFeed, lastOther = f, o
	}
	if lastFeed != peerRetryMax || lastOther != maxBackoff {
		t.Fatalf("waits end at %s and %s, want %s and %s", lastFeed, lastOther, peerRetryMax, maxBackoff)
	}
	feed.reset()
	if d := feed.step(); d != minBackoff {
		t.Fatalf("after a success the wait is %s, want %s", d, minBackoff)
	}
}

// TestOnlySmallBlobsOfAnOnDemandRepositoryAreKeptEverywhere: the bytes a
// feed record carries inline (region.InlineMax) are what every region
// keeps of an on-demand image, whether it follows the feed or joins from
// a snapshot.
func TestOnlySmallBlobsOfAnOnDemandRepositoryAreKeptEverywhere(t *testing.T) {
	for size, want := range map[int64]bool{-1: false, 0: false, 1: true, region.InlineMax: true, region.InlineMax + 1: false, 200_000: false} {
		if got := keptOnDemand(size); got != want {
			t.Errorf("keptOnDemand(%d) = %v, want %v", size, got, want)
		}
	}
}

// TestOnlyAPeerThatWasNeverReadyIsNoFaultOfAJoin: a snapshot refused
// because the peer has never been Ready (regions starting together, all
// empty) is told apart from every other failure, as the peer's answer
// reaches the joiner (read back from the wire, wrapped as requests wrap it).
func TestOnlyAPeerThatWasNeverReadyIsNoFaultOfAJoin(t *testing.T) {
	wire := func(e *ocierr.Error) error {
		rec := httptest.NewRecorder()
		ocierr.Write(rec, httptest.NewRequest(http.MethodGet, feed.SnapshotPath, nil), e)
		return fmt.Errorf("%w: eastus%s: %w", errPeer, feed.SnapshotPath, ocierr.Read(rec.Result()))
	}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"never Ready", wire(ocierr.Unavailable.WithDetail("not Ready", map[string]string{"state": feed.SnapshotNotReady})), true},
		{"unavailable for another reason", wire(ocierr.Unavailable.Withf("shutting down")), false},
		{"unavailable, another state", wire(ocierr.Unavailable.WithDetail("x", map[string]string{"state": "deleted"})), false},
		{"another code with the state", wire(ocierr.Denied.WithDetail("x", map[string]string{"state": feed.SnapshotNotReady})), false},
		{"a cut-short snapshot", errors.New("eastus's snapshot: unexpected EOF"), false},
		{"the peer's 404", fmt.Errorf("eastus%s: %w", feed.SnapshotPath, errGone), false},
	} {
		if got := peerNotReady(c.err); got != c.want {
			t.Errorf("%s: peerNotReady(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
