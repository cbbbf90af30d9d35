package meta

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// What the nodes of a region on PostgreSQL tell each other, as
// notifications PostgreSQL delivers to every listening connection in the
// order their transactions committed:
//
//   - feedChannel: the feed grew (long-polls wake);
//   - changesChannel: tags or manifests of these repositories changed (a
//     node's caches forget them), sent by the transaction that changed them;
//   - syncChannel: a node's own marker (Sync), so it knows it has heard of
//     every commit before the marker's.
const (
	changesChannel = "georeg_changes"
	syncChannel    = "georeg_sync"
)

// allRepositories in a change notification: every repository changed (a
// purge, or more repositories than a notification holds).
const allRepositories = "*"

// maxNotifyPayload is below PostgreSQL's 8000-byte payload limit.
const maxNotifyPayload = 7000

// changed records that tags or manifests of repo change in this
// transaction ("*": of every repository).
func (tx *Tx) changed(repo string) {
	if tx.dialect != postgres {
		return
	}
	if tx.changedRepos == nil {
		tx.changedRepos = map[string]struct{}{}
	}
	tx.changedRepos[repo] = struct{}{}
}

// notifyChanges has PostgreSQL tell every listening node, when tx commits,
// which repositories' tags and manifests it changed.
func (tx *Tx) notifyChanges(ctx context.Context) error {
	if len(tx.changedRepos) == 0 {
		return nil
	}
	repos := make([]string, 0, len(tx.changedRepos))
	size := 0
	for r := range tx.changedRepos {
		repos, size = append(repos, r), size+len(r)+1
	}
	payload := strings.Join(repos, "\n")
	if _, all := tx.changedRepos[allRepositories]; all || size > maxNotifyPayload {
		payload = allRepositories
	}
	_, err := tx.tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, changesChannel, payload)
	return err
}

// Listeners are what Listen calls.
type Listeners struct {
	Feed func() // a feed append committed on some node
	// Changed: tags or manifests of repo changed on some node ("" for any
	// repository: also called when notifications may have been missed).
	Changed func(repo string)
	Failed  func(error) // the connection broke; Listen reconnects
}

// listener is a node's state of its LISTEN connection, for Sync.
type listener struct {
	mu      sync.Mutex
	up      bool                    // the connection listens: Sync may succeed
	next    uint64                  // the next marker's number
	waiting []chan error            // Sync calls for the next marker
	sent    map[uint64][]chan error // markers sent, not yet heard back
	kick    chan struct{}           // wakes the marker sender
	self    string                  // this DB's prefix in marker payloads
}

// Listen calls ls as other nodes' commits are notified, until ctx ends;
// it returns at once, nil, for a store only one node uses (SQLite: a node
// sees its own writes). When the connection breaks it reports why,
// connects again (backing off to 5 s), and calls Feed and Changed("") then
// (notifications may have been missed meanwhile); until it is back, Sync
// fails, so caches are not trusted, and long-polls wake only at their own
// timeout.
func (db *DB) Listen(ctx context.Context, ls Listeners) error {
	if db.dialect != postgres {
		return nil
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		began := time.Now()
		err := db.listen(ctx, ls)
		db.lst.down(err)
		if ctx.Err() != nil {
			return nil
		}
		ls.Failed(err)
		ls.Feed()
		ls.Changed("")
		if time.Since(began) > time.Minute {
			backoff = 100 * time.Millisecond // it had been working: retry soon
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

func (db *DB) listen(ctx context.Context, ls Listeners) error {
	cfg, err := pgx.ParseConfig(db.dsn)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Markers go out on a connection of their own, committed without
	// waiting for the WAL flush: a marker need not survive a crash.
	marker, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer marker.Close(context.WithoutCancel(ctx))
	if _, err := marker.Exec(ctx, "SET synchronous_commit TO off"); err != nil {
		return err
	}
	for _, ch := range []string{feedChannel, changesChannel, syncChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	// Anything committed before LISTEN took effect.
	ls.Feed()
	ls.Changed("")
	// A marker that cannot be sent ends the listening too, so it starts
	// again (Sync fails meanwhile) rather than leave Sync calls waiting.
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	sent := make(chan error, 1)
	go func() {
		err := db.lst.sendMarkers(lctx, marker)
		stop()
		sent <- err
	}()
	db.lst.setUp()
	for {
		n, err := conn.WaitForNotification(lctx)
		if err != nil {
			stop()
			if serr := <-sent; serr != nil && ctx.Err() == nil {
				return fmt.Errorf("send a sync marker: %w", serr)
			}
			return err
		}
		switch n.Channel {
		case feedChannel:
			ls.Feed()
		case changesChannel:
			for repo := range strings.SplitSeq(n.Payload, "\n") {
				if repo == allRepositories {
					repo = ""
				}
				ls.Changed(repo)
			}
		case syncChannel:
			db.lst.heard(n.Payload)
		}
	}
}

// ErrNotListening is Sync's answer while this node's LISTEN connection is
// down (or was never started): other nodes' changes may go unheard.
var ErrNotListening = errors.New("not listening for other nodes' changes")

// Sync returns once this node has heard of every change another node of
// the region committed before Sync was called: the Changed listener has
// run for them. It sends a marker notification and waits to hear it back
// (PostgreSQL delivers notifications in commit order); concurrent calls
// share a marker, so a busy node sends one per round trip, not one per
// call. With SQLite it returns nil at once.
func (db *DB) Sync(ctx context.Context) error {
	if db.dialect != postgres {
		return nil
	}
	ch := make(chan error, 1)
	if err := db.lst.wait(ch); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *listener) wait(ch chan error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.up {
		return ErrNotListening
	}
	l.waiting = append(l.waiting, ch)
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return nil
}

func (l *listener) setUp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.up = true
}

// down fails every Sync waiting; new ones fail until the connection is up.
func (l *listener) down(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.up = false
	if err == nil {
		err = ErrNotListening
	}
	err = fmt.Errorf("%w: %w", ErrNotListening, err)
	for _, ch := range l.waiting {
		ch <- err
	}
	for _, chs := range l.sent {
		for _, ch := range chs {
			ch <- err
		}
	}
	l.waiting, l.sent = nil, map[uint64][]chan error{}
}

// sendMarkers sends a marker whenever Sync calls wait for one, until ctx
// ends or a send fails. Calls that arrive while a marker is being sent
// wait for the next one: the marker they wait for commits after they
// began.
func (l *listener) sendMarkers(ctx context.Context, conn *pgx.Conn) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.kick:
		}
		l.mu.Lock()
		batch := l.waiting
		l.waiting = nil
		n := l.next
		l.next++
		if len(batch) > 0 {
			l.sent[n] = batch
		}
		l.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		if _, err := conn.Exec(ctx, `SELECT pg_notify($1, $2)`, syncChannel, l.self+strconv.FormatUint(n, 10)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// heard releases the Sync calls of a marker this node sent, and of every
// earlier one (a marker is heard after every earlier one).
func (l *listener) heard(payload string) {
	num, ok := strings.CutPrefix(payload, l.self)
	if !ok {
		return // another node's
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, chs := range l.sent {
		if k <= n {
			for _, ch := range chs {
				ch <- nil
			}
			delete(l.sent, k)
		}
	}
}

func newListener() *listener {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &listener{sent: map[uint64][]chan error{}, kick: make(chan struct{}, 1), self: hex.EncodeToString(b[:]) + ":"}
}
