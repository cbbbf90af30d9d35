package route

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
