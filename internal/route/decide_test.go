package route

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/ocierr"
)

// Tests of the front door's small decisions, in the package: defaults,
// the bounds a configuration may not cross, which nodes a request may go
// to, and which failed requests may go to another node.

func TestDefaultsFillOnlyWhatIsUnset(t *testing.T) {
	got := Config{}.WithDefaults()
	want := Config{ProbeInterval: time.Second, FailAfter: 2, RecoverAfter: 3,
		ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 30 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
	set := Config{ProbeInterval: 7 * time.Millisecond, FailAfter: 9, RecoverAfter: 8,
		ReadTimeout: 6 * time.Millisecond, WriteTimeout: 5 * time.Millisecond, IdleTimeout: 4 * time.Millisecond}
	if got := set.WithDefaults(); fmt.Sprint(got) != fmt.Sprint(set) {
		t.Fatalf("set fields changed: %+v, want %+v", got, set)
	}
}

func TestNoBoundMayBeNegativeAndZeroIsAllowed(t *testing.T) {
	base := Config{Regions: []Region{{Name: "eastus", Endpoint: "http://127.0.0.1:5001"}}}
	if err := base.Validate(); err != nil {
		t.Fatalf("zero bounds (defaults to come): %v", err)
	}
	for name, set := range map[string]func(*Config){
		"probeInterval": func(c *Config) { c.ProbeInterval = -1 },
		"failAfter":     func(c *Config) { c.FailAfter = -1 },
		"recoverAfter":  func(c *Config) { c.RecoverAfter = -1 },
		"readTimeout":   func(c *Config) { c.ReadTimeout = -1 },
		"writeTimeout":  func(c *Config) { c.WriteTimeout = -1 },
		"idleTimeout":   func(c *Config) { c.IdleTimeout = -1 },
	} {
		c := base
		set(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "must not be negative") {
			t.Errorf("%s = -1: %v, want refused", name, err)
		}
	}
}

func nodes(healthy ...bool) *regionState {
	st := &regionState{}
	for i, h := range healthy {
		st.nodes = append(st.nodes, &nodeState{url: fmt.Sprint("n", i), healthy: h})
	}
	return st
}

func urls(ns []*nodeState) string {
	var out []string
	for _, n := range ns {
		out = append(out, n.url)
	}
	return strings.Join(out, ",")
}

// TestRotationTakesHealthyNodesInTurnAndAllWhenNoneIs: each request
// starts at the next healthy node; with none healthy every node is tried
// (a last try beats no answer).
func TestRotationTakesHealthyNodesInTurnAndAllWhenNoneIs(t *testing.T) {
	st := nodes(true, false, true, true)
	var got []string
	for range 4 {
		got = append(got, urls(st.rotation()))
	}
	if want := "n2,n3,n0 n2,n3,n0 n3,n0,n2 n0,n2,n3"; strings.Join(got, " ") != want {
		t.Fatalf("rotations %v, want %s", got, want)
	}
	none := nodes(false, false, false)
	if got := urls(none.rotation()); got != "n1,n2,n0" {
		t.Fatalf("none healthy: %s, want every node from the next in turn", got)
	}
}

type readCloser struct{ io.Reader }

func (readCloser) Close() error { return nil }

// TestOnlyARequestNoNodeCanHaveActedOnGoesToAnotherNode: a request whose
// body a node read from stays with it; a GET or HEAD may be tried
// elsewhere; any other request only when the node never took the
// connection.
func TestOnlyARequestNoNodeCanHaveActedOnGoesToAnotherNode(t *testing.T) {
	dial := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	read := &net.OpError{Op: "read", Err: errors.New("connection reset")}
	unread := &body{rc: readCloser{strings.NewReader("abc")}}
	partly := &body{rc: readCloser{strings.NewReader("abc")}}
	if _, err := partly.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method string
		b      *body
		err    error
		want   bool
	}{
		{http.MethodGet, nil, read, true},
		{http.MethodHead, nil, read, true},
		{http.MethodGet, unread, read, true},
		{http.MethodPut, unread, dial, true},
		{http.MethodPut, nil, dial, true},
		{http.MethodPut, unread, read, false},
		{http.MethodPatch, nil, errors.New("timeout"), false},
		{http.MethodPut, partly, dial, false},
		{http.MethodGet, partly, read, false},
	} {
		req, _ := http.NewRequest(tc.method, "http://x/v2/", nil)
		if got := retryable(req, tc.b, tc.err); got != tc.want {
			read := int64(0)
			if tc.b != nil {
				read = tc.b.n.Load()
			}
			t.Errorf("%s, %d body bytes read, %v: retryable %v, want %v", tc.method, read, tc.err, got, tc.want)
		}
	}
}

func TestAReadWaitsForItsAnswerWithinTheReadBoundAnyOtherWithinTheWriteBound(t *testing.T) {
	c := Config{ReadTimeout: 1, WriteTimeout: 2, IdleTimeout: 3}
	for method, want := range map[string]time.Duration{
		http.MethodGet: 1, http.MethodHead: 1, http.MethodPut: 2, http.MethodPost: 2, http.MethodPatch: 2, http.MethodDelete: 2,
	} {
		req, _ := http.NewRequest(method, "http://x/v2/", nil)
		if l := c.limits(req); l.Header != want || l.Idle != 3 {
			t.Errorf("%s: %+v, want header %d, idle 3", method, l, want)
		}
	}
}

// TestAnsweringAndUsableNodes: a read goes to a healthy node whose last
// probe answered (one that began to fail is not asked for more); a region
// is usable when routing is on and a node is healthy and Ready — for a
// push, one that also takes pushes.
func TestAnsweringAndUsableNodes(t *testing.T) {
	st := &regionState{enabled: true, nodes: []*nodeState{
		{url: "failing", healthy: true, bad: 1, ready: true, writable: true},
		{url: "drained", healthy: false, ready: true, writable: true},
		{url: "full", healthy: true, ready: true, writable: false},
	}}
	if n := st.answeringNode(); n == nil || n.url != "full" {
		t.Fatalf("answering node: %+v, want full", n)
	}
	if !st.usable(false) || !st.usable(true) { // "failing" is healthy, Ready and writable until drained
		t.Fatalf("usable for reads %v, writes %v", st.usable(false), st.usable(true))
	}
	st.nodes[0].writable = false
	if !st.usable(false) || st.usable(true) {
		t.Fatalf("no writable node: usable for reads %v (want true), writes %v (want false)", st.usable(false), st.usable(true))
	}
	st.nodes[0].ready, st.nodes[2].ready = false, false
	if st.usable(false) {
		t.Fatal("no Ready healthy node, yet usable")
	}
	st.nodes[0].ready = true
	st.enabled = false
	if st.usable(false) {
		t.Fatal("routing off, yet usable")
	}
	none := &regionState{nodes: []*nodeState{{url: "a", healthy: true, bad: 2}, {url: "b"}}}
	if n := none.answeringNode(); n != nil {
		t.Fatalf("answering node %s among a failing and a drained one", n.url)
	}
}

// TestTheDoorSeesARegionReadyWhenAHealthyNodeIsReady: whatever its
// routing flag (georeg up reports a region Ready once the door sees it
// so); a drained node's last Ready does not count, nor does an unknown
// region.
func TestTheDoorSeesARegionReadyWhenAHealthyNodeIsReady(t *testing.T) {
	st := &regionState{enabled: false, nodes: []*nodeState{
		{url: "drained", healthy: false, ready: true},
		{url: "syncing", healthy: true, ready: false},
	}}
	r := &Router{regions: map[string]*regionState{"eastus": st}}
	if r.SeesReady("eastus") {
		t.Fatal("seen Ready with a drained Ready node and a healthy Syncing one")
	}
	st.nodes[1].ready = true
	if !r.SeesReady("eastus") {
		t.Fatal("not seen Ready with a healthy Ready node (routing off)")
	}
	if r.SeesReady("westeurope") {
		t.Fatal("an unknown region seen Ready")
	}
}

// TestTheDoorTellsWhenARegionStopsTakingClients: a region routable at
// its first probe is news (info), as is one routable again; one that stops
// being routable is logged naming why (a warning unless its routing was
// turned off); a region not yet routable since the door started
// (starting, catching up) is no news at all.
func TestTheDoorTellsWhenARegionStopsTakingClients(t *testing.T) {
	for _, c := range []struct {
		was, ever, now bool
		want           int
	}{
		{false, false, false, routableSame}, // never routable yet: a region starting, catching up
		{false, false, true, routableFirst},
		{false, true, false, routableSame},
		{false, true, true, routableAgain},
		{true, true, true, routableSame},
		{true, true, false, routableLost},
	} {
		if got := routingChange(c.was, c.ever, c.now); got != c.want {
			t.Errorf("was %v (ever %v), now %v: %d, want %d", c.was, c.ever, c.now, got, c.want)
		}
	}
	st := &regionState{enabled: true, nodes: []*nodeState{{url: "a", healthy: true}, {url: "b"}}}
	for _, c := range []struct {
		set  func()
		want string
		off  bool
	}{
		{func() {}, "it is not Ready (catching up)", false},
		{func() { st.nodes[0].healthy = false }, "no node of it passes its health checks", false},
		{func() { st.enabled = false }, "its routing is off", true},
	} {
		c.set()
		if got, off := st.notRoutableWhy(); got != c.want || off != c.off {
			t.Errorf("why: %q (off %v), want %q (off %v)", got, off, c.want, c.off)
		}
	}
}

// TestARequestPinnedToARegionGoesThereOnlyWhenItCanServe: a pinned
// request is refused (503 UNAVAILABLE, naming the cause) when the
// region's routing is off or every node is drained; a region not Ready
// or full is still reached (its own answer says so).
func TestARequestPinnedToARegionGoesThereOnlyWhenItCanServe(t *testing.T) {
	st := &regionState{Region: Region{Name: "westeurope"}, enabled: true, nodes: []*nodeState{{url: "a", healthy: true}}}
	if err := st.pinnedRefusal(); err != nil {
		t.Fatalf("a healthy region, not Ready and full: %v", err)
	}
	st.nodes[0].healthy = false
	if err := st.pinnedRefusal(); !ocierr.Unavailable.Is(err) || !strings.Contains(err.Error(), "drained") || err.RetryAfter == 0 {
		t.Fatalf("a drained region: %v", err)
	}
	st.nodes[0].healthy, st.enabled = true, false
	if err := st.pinnedRefusal(); !ocierr.Unavailable.Is(err) || !strings.Contains(err.Error(), "routing turned off") {
		t.Fatalf("a region with routing off: %v", err)
	}
}

// TestProbesDrainAfterFailAfterAndRestoreAfterRecoverAfter: with
// failAfter 2 and recoverAfter 3, a new node is in service at its first
// answer; two failures in a row drain it (one does not); after that it
// takes three answers in a row, and a failure among them starts over.
func TestProbesDrainAfterFailAfterAndRestoreAfterRecoverAfter(t *testing.T) {
	fail := errors.New("probe failed")
	ok := probe{ready: true, writable: true}
	n := &nodeState{}
	steps := []struct {
		err     error
		want    int
		healthy bool
	}{
		{nil, inService, true},   // the first answer counts at once
		{fail, unchanged, true},  // one failure is not enough
		{nil, unchanged, true},   // and an answer resets the count
		{fail, unchanged, true},  //
		{fail, drained, false},   // two in a row drain it
		{fail, unchanged, false}, // still drained
		{nil, unchanged, false},  // 1 of 3
		{nil, unchanged, false},  // 2 of 3
		{fail, unchanged, false}, // starts over
		{nil, unchanged, false},  // 1
		{nil, unchanged, false},  // 2
		{nil, inService, true},   // 3: back
		{nil, unchanged, true},
	}
	for i, s := range steps {
		p := ok
		if s.err != nil {
			p = probe{}
		}
		if got := n.record(p, s.err, 2, 3); got != s.want || n.healthy != s.healthy {
			t.Fatalf("step %d (%v): change %d healthy %v, want %d %v", i, s.err, got, n.healthy, s.want, s.healthy)
		}
	}
	if n.lastErr != "" || !n.ready || !n.writable {
		t.Fatalf("after an answer: lastErr %q ready %v writable %v", n.lastErr, n.ready, n.writable)
	}
	n.record(probe{}, fail, 2, 3)
	if n.lastErr != "probe failed" || n.good != 0 || n.bad != 1 {
		t.Fatalf("after a failure: %+v", n)
	}
	n.record(probe{ready: false, writable: false}, nil, 2, 3)
	if n.ready || n.writable {
		t.Fatal("an answer's readiness and writability are not recorded")
	}
}

func testRouter(t *testing.T) *Router {
	t.Helper()
	r, err := New(Config{
		Regions: []Region{{Name: "eastus", Endpoint: "http://127.0.0.1:5001"}, {Name: "westeurope", Endpoint: "http://127.0.0.1:5002"},
			{Name: "southeastasia", Endpoint: "http://127.0.0.1:5003"}},
		// Listed shortest first: the longest prefix must still win.
		Locations: []Location{{CIDR: "10.0.0.0/8", Region: "eastus"}, {CIDR: "10.1.0.0/16", Region: "westeurope"}, {CIDR: "10.1.2.0/24", Region: "southeastasia"}},
		Fallback:  map[string][]string{"westeurope": {"southeastasia", "eastus"}},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range r.regions {
		st.enabled = true
		for _, n := range st.nodes {
			n.healthy, n.ready, n.writable = true, true, true
		}
	}
	return r
}

// TestAClientGoesToTheRegionOfItsLongestPrefixThenItsFallbacks: the
// longest matching location wins whatever the configuration's order;
// a region that cannot serve passes its clients down its fallback list;
// a push skips a region that takes no pushes; an upload session stays in
// the region its id names.
func TestAClientGoesToTheRegionOfItsLongestPrefixThenItsFallbacks(t *testing.T) {
	r := testRouter(t)
	for ip, want := range map[string]string{"10.1.2.3": "southeastasia", "10.1.9.9": "westeurope", "10.7.0.1": "eastus", "192.0.2.1": "eastus", "::ffff:10.1.9.9": "westeurope"} {
		if got, _ := r.Choose(netip.MustParseAddr(ip), "/v2/app/manifests/v1", false); got != want {
			t.Errorf("client %s goes to %s, want %s", ip, got, want)
		}
	}
	west := netip.MustParseAddr("10.1.9.9")
	r.regions["westeurope"].enabled = false
	if got, _ := r.Choose(west, "/v2/", false); got != "southeastasia" {
		t.Errorf("westeurope off: its client goes to %s, want its first fallback southeastasia", got)
	}
	r.regions["westeurope"].enabled = true
	r.regions["westeurope"].nodes[0].writable = false
	if got, _ := r.Choose(west, "/v2/", true); got != "southeastasia" {
		t.Errorf("westeurope full: a push goes to %s, want southeastasia", got)
	}
	if got, _ := r.Choose(west, "/v2/", false); got != "westeurope" {
		t.Errorf("westeurope full: a pull goes to %s, want westeurope (it serves pulls)", got)
	}
	for _, st := range r.regions {
		st.nodes[0].writable = false
	}
	if got, _ := r.Choose(west, "/v2/", true); got != "westeurope" {
		t.Errorf("every region full: a push goes to %s, want home westeurope (to be told STORAGE_FULL)", got)
	}
	for _, st := range r.regions {
		st.enabled = false
	}
	r.regions["southeastasia"].nodes[0].healthy = false
	if got, _ := r.Choose(west, "/v2/", false); got != "eastus" {
		t.Errorf("routing off everywhere: %s, want the first healthy region eastus", got)
	}
	for _, st := range r.regions {
		st.nodes[0].healthy = false
	}
	if got, _ := r.Choose(west, "/v2/", false); got != "" {
		t.Errorf("nothing healthy: %q, want none", got)
	}
	for path, want := range map[string]string{
		"/v2/app/blobs/uploads/southeastasia.0a1b": "southeastasia",
		"/v2/app/blobs/uploads/nowhere.0a1b":       "",
		"/v2/app/blobs/uploads/southeastasia":      "",
		"/v2/app/manifests/v1":                     "",
	} {
		got, pinned := r.Choose(west, path, true)
		if (want != "") != pinned || (pinned && got != want) {
			t.Errorf("%s: %q pinned %v, want %q", path, got, pinned, want)
		}
	}
}

// TestOnlyALaterRoutingFlagReplacesTheOneHeld: a region that has not yet
// applied a routing change cannot turn it back at the door.
func TestOnlyALaterRoutingFlagReplacesTheOneHeld(t *testing.T) {
	at := func(ms int64, region string) hlc.Version {
		return hlc.Version{Time: hlc.TimeAt(time.UnixMilli(ms)), Region: region}
	}
	for _, c := range []struct {
		name    string
		cur, v  hlc.Version
		replace bool
	}{
		{"never set, view never set", hlc.Version{}, hlc.Version{}, true},
		{"never set, versioned view", hlc.Version{}, at(10, "eastus"), true},
		{"set, view of a region that never saw it", at(10, "eastus"), hlc.Version{}, false},
		{"set, older view", at(10, "eastus"), at(5, "westeurope"), false},
		{"set, same view", at(10, "eastus"), at(10, "eastus"), false},
		{"set, later view", at(10, "eastus"), at(11, "westeurope"), true},
	} {
		if got := laterFlag(c.cur, c.v); got != c.replace {
			t.Errorf("%s: laterFlag = %v, want %v", c.name, got, c.replace)
		}
	}
}
