package meta

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// What the nodes of a region on PostgreSQL tell each other, as
// notifications PostgreSQL delivers to every listening connection in the
// order their transactions committed:
//
//   - feedChannel: the feed grew (long-polls wake);
//   - changesChannel: tags or manifests of these repositories changed (a
//     node's caches forget them), sent by the transaction that changed
//     them; its first line names the writing node and numbers the change;
//   - nodesChannel: each node's heartbeat, and its acknowledgements of the
//     changes it heard (lease.go).
const (
	changesChannel = "georeg_changes"
	nodesChannel   = "georeg_nodes"
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

// changesPayload is what tells every listening node, when tx commits,
// which repositories' tags and manifests it changed (nil: none); it
// numbers the change among this node's (tx.change), for the others'
// acknowledgements: the caller holds the sequencer or the node's turn
// at it (sequence), so changes are numbered in commit order.
func (tx *Tx) changesPayload(l *listener) *string {
	if len(tx.changedRepos) == 0 {
		return nil
	}
	repos := make([]string, 0, len(tx.changedRepos))
	size := 0
	for r := range tx.changedRepos {
		repos, size = append(repos, r), size+len(r)+1
	}
	if _, all := tx.changedRepos[allRepositories]; all || size > maxNotifyPayload {
		repos = []string{allRepositories}
	}
	tx.change = l.nextChange()
	payload := l.self + ":" + strconv.FormatUint(tx.change, 10) + "\n" + strings.Join(repos, "\n")
	return &payload
}

// Listeners are what Listen calls.
type Listeners struct {
	Feed func() // a feed append committed on some node
	// Changed: tags or manifests of repo changed on some node ("" for any
	// repository: also called when notifications may have been missed).
	Changed func(repo string)
	Failed  func(error) // the connection broke; Listen reconnects
}

// Listen calls ls as other nodes' commits are notified, until ctx ends;
// it returns at once, nil, for a store only one node uses (SQLite: a node
// sees its own writes). It also keeps this node's cache lease (Fresh) and
// acknowledges the changes it hears (lease.go). When the connection
// breaks it reports why, connects again (backing off to 5 s), and calls
// Feed and Changed("") then (notifications may have been missed
// meanwhile); until it is back, Fresh is false, so the cache is not
// trusted, and long-polls wake only at their own timeout.
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
	// Heartbeats and acknowledgements go out on a connection of their
	// own, committed without waiting for the WAL flush: neither need
	// survive a crash.
	out, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer out.Close(context.WithoutCancel(ctx))
	if _, err := out.Exec(ctx, "SET synchronous_commit TO off"); err != nil {
		return err
	}
	for _, ch := range []string{feedChannel, changesChannel, nodesChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	// Anything committed before LISTEN took effect.
	ls.Feed()
	ls.Changed("")
	// A notification that cannot be sent ends the listening too, so it
	// starts again (with no lease meanwhile).
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	sent := make(chan error, 1)
	go func() {
		err := db.lst.send(lctx, out)
		stop()
		sent <- err
	}()
	db.lst.setUp()
	for {
		n, err := conn.WaitForNotification(lctx)
		if err != nil {
			stop()
			if serr := <-sent; serr != nil && ctx.Err() == nil {
				return fmt.Errorf("send a heartbeat or acknowledgement: %w", serr)
			}
			return err
		}
		switch n.Channel {
		case feedChannel:
			ls.Feed()
		case changesChannel:
			// The first line names the writer and numbers the change ("NODE:N",
			// never a repository name: those hold no colon); a node of an
			// older version sends repositories only.
			first, rest, _ := strings.Cut(n.Payload, "\n")
			numbered := strings.Contains(first, ":")
			if !numbered {
				rest = n.Payload
			}
			for repo := range strings.SplitSeq(rest, "\n") {
				if repo == allRepositories {
					repo = ""
				}
				ls.Changed(repo)
			}
			if numbered {
				// Acknowledged only once the cache has forgotten them.
				db.lst.heardChange(first)
			}
		case nodesChannel:
			db.lst.heardNode(n.Payload)
		}
	}
}
