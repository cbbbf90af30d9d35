package meta

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cache leases: how a node of a region on PostgreSQL serves tags and
// manifests from its cache with no query per read, yet never serves one
// that another node changed before the read began (invariant 5).
//
//   - A node trusts its cache only while it holds a lease: it sends itself
//     a heartbeat every heartbeatEvery, and the lease runs until leaseFor
//     after the send of the last one it heard back. PostgreSQL delivers
//     notifications in commit order, so hearing a heartbeat means having
//     heard, and applied to the cache, every change committed before it.
//   - A change's writer answers its client only once every other node it
//     knows of has acknowledged the change (each sends an acknowledgement
//     once its cache has forgotten the change's repositories), or, when
//     one does not (hung, cut off), once leaseFor+leaseMargin has passed
//     since the commit: that node's lease has run out by then, since the
//     heartbeat it last heard was sent before the commit.
//   - The writer counts as known every node whose heartbeat it heard within
//     leaseFor+leaseMargin, and looks only after hearing its own change:
//     by then it has heard every heartbeat committed before it, so a node
//     whose lease could cover a read after the commit is known.
//
// Only elapsed time is compared across nodes (each on its own monotonic
// clock), never clock readings: a lease and a writer's wait both start
// from events ordered by PostgreSQL. leaseMargin covers the clocks'
// rates and a node paused between checking its lease and reading its
// cache.
const (
	heartbeatEvery = 50 * time.Millisecond
	leaseFor       = 200 * time.Millisecond
	leaseMargin    = 100 * time.Millisecond
)

// listener is a node's state of its LISTEN connection: its lease, the
// other nodes it knows and what they acknowledged.
type listener struct {
	mu      sync.Mutex
	self    string    // this node's name in notifications
	base    time.Time // times below are durations since base (monotonic)
	started bool      // Listen ran: this node's writes wait for acknowledgements
	up      bool      // the connection listens
	lease   time.Duration
	changes uint64                   // this node's changes numbered so far
	heard   uint64                   // the highest of them heard back
	members map[string]time.Duration // other nodes, when last heard
	acked   map[string]uint64        // the highest of this node's changes each acknowledged
	toAck   map[string]uint64        // other nodes' changes heard, not yet acknowledged
	wake    chan struct{}            // closed on every change of the above
	kick    chan struct{}            // acknowledgements to send
}

func newListener() *listener {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &listener{self: hex.EncodeToString(b[:]), base: time.Now(), members: map[string]time.Duration{},
		acked: map[string]uint64{}, toAck: map[string]uint64{}, wake: make(chan struct{}), kick: make(chan struct{}, 1)}
}

func (l *listener) now() time.Duration { return time.Since(l.base) }

// changed wakes the writers waiting; mu is held.
func (l *listener) changed() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// Fresh reports whether this node may serve tags and manifests from its
// cache now: always with SQLite (one node), and on PostgreSQL while its
// lease runs (see above).
func (db *DB) Fresh() bool {
	if db.dialect != postgres {
		return true
	}
	l := db.lst
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up && l.now() < l.lease
}

func (l *listener) nextChange() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changes++
	return l.changes
}

func (l *listener) setUp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.up, l.started = true, true
}

// down ends the lease; it starts again with the next heartbeat heard.
func (l *listener) down(error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.up, l.lease = false, 0
	clear(l.toAck)
	l.changed()
}

// heardChange records a change notification's first line, "NODE:N",
// heard (and its repositories forgotten).
func (l *listener) heardChange(first string) {
	node, num, ok := strings.Cut(first, ":")
	n, err := strconv.ParseUint(num, 10, 64)
	if !ok || err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if node == l.self {
		l.heard = max(l.heard, n)
		l.changed()
		return
	}
	l.toAck[node] = max(l.toAck[node], n)
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// heardNode records a heartbeat ("hb NODE SENT") or an acknowledgement
// ("ack NODE WRITER=N ...").
func (l *listener) heardNode(payload string) {
	f := strings.Fields(payload)
	if len(f) < 2 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	node := f[1]
	switch {
	case f[0] == "hb" && len(f) == 3 && node == l.self:
		if sent, err := strconv.ParseInt(f[2], 10, 64); err == nil {
			l.lease = max(l.lease, time.Duration(sent)+leaseFor)
		}
	case f[0] == "hb" && node != l.self:
		l.members[node] = l.now()
	case f[0] == "ack" && node != l.self:
		l.members[node] = l.now()
		for _, a := range f[2:] {
			w, num, _ := strings.Cut(a, "=")
			if n, err := strconv.ParseUint(num, 10, 64); err == nil && w == l.self {
				l.acked[node] = max(l.acked[node], n)
			}
		}
	default:
		return
	}
	l.changed()
}

// send sends a heartbeat every heartbeatEvery and the acknowledgements
// due, until ctx ends or a send fails.
func (l *listener) send(ctx context.Context, conn *pgx.Conn) error {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	beat := func() error {
		_, err := conn.Exec(ctx, `SELECT pg_notify($1, $2)`, nodesChannel,
			"hb "+l.self+" "+strconv.FormatInt(int64(l.now()), 10)) // read before the send
		return err
	}
	if err := beat(); err != nil {
		return quiet(ctx, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := beat(); err != nil {
				return quiet(ctx, err)
			}
		case <-l.kick:
			l.mu.Lock()
			var b strings.Builder
			b.WriteString("ack " + l.self)
			for w, n := range l.toAck {
				b.WriteString(" " + w + "=" + strconv.FormatUint(n, 10))
			}
			clear(l.toAck)
			l.mu.Unlock()
			if _, err := conn.Exec(ctx, `SELECT pg_notify($1, $2)`, nodesChannel, b.String()); err != nil {
				return quiet(ctx, err)
			}
		}
	}
}

func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// await returns once every other node this one knows has acknowledged
// its change n, committed at committed (since base), or once
// leaseFor+leaseMargin has passed since then. A node that never listened
// (no Listen: a tool, a test of the store alone) waits for nobody.
func (l *listener) await(ctx context.Context, n uint64, committed time.Duration) {
	deadline := committed + leaseFor + leaseMargin
	for {
		l.mu.Lock()
		if !l.started {
			l.mu.Unlock()
			return
		}
		now := l.now()
		if l.up && l.heard >= n {
			all := true
			for node, last := range l.members {
				if now-last > leaseFor+leaseMargin {
					delete(l.members, node) // silent too long: its lease has run out
					delete(l.acked, node)
					continue
				}
				if l.acked[node] < n {
					all = false
				}
			}
			if all {
				l.mu.Unlock()
				return
			}
		}
		wake := l.wake
		l.mu.Unlock()
		if now >= deadline {
			return
		}
		t := time.NewTimer(deadline - now)
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// memberCount returns how many other nodes this one knows (tests).
func (l *listener) memberCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.members)
}
