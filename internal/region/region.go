package region

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/content/crypt"
	contentfs "github.com/georeg/georeg/internal/content/fs"
	contents3 "github.com/georeg/georeg/internal/content/s3"
	"github.com/georeg/georeg/internal/encryption"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// Region is one region node's operations over its stores. It is safe for
// concurrent use.
type Region struct {
	cfg   Config
	log   *slog.Logger
	db    *meta.DB
	store *content.Store
	clock *hlc.Clock
	cache *cache
	feed  *feedNotifier
	now   func() time.Time

	mu       sync.Mutex
	sessions map[string]*session  // upload sessions this process saw
	partials map[string]*partial  // broken fetches kept to resume, by staging id
	fetching map[string]*inflight // blob fetches from peers running, by staging id (fetchtail.go)
	spills   map[string]spillFile // spill files of fetches running, by staging id (spill.go)
	cold     coldBlobs            // blobs the artifact cache is fetching, offered (cold.go)

	retired     atomic.Bool // a true Retired, cached: a region never comes back from it
	gc          gcState
	leases      leases
	members     MembersFunc         // the Ready regions, for replicated-everywhere
	outboxWake  chan struct{}       // signalled when webhook deliveries were enqueued
	space       *space              // out of storage or not (space.go)
	traffic     traffic             // bytes served and received, not yet recorded (traffic.go)
	evictor     Evictor             // the artifact cache's eviction, run with retention (pulls.go)
	onDemand    OnDemandFunc        // cached repositories whose bytes are held only where pulled (ondemand.go)
	quotas      quotas              // the quota settings and stored bytes this node saw (quota.go)
	recentUsage recentUsage         // the last usage figure, for metrics and the dashboard (usage.go)
	recent      recentSettings      // the settings this node read lately, by kind (recentsettings.go)
	applied     peerApplied         // marks peers published (presence.go)
	keyring     *encryption.Keyring // encryption at rest's data keys, or nil (encryption.go)
	enc         encryptionState     // the encryption job's progress (encryption.go)
}

// Open opens the region's stores as cfg says: blobs on the filesystem
// under DataDir or in an S3 bucket, metadata in SQLite under DataDir or in
// PostgreSQL.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Region, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var backend content.Backend
	switch cfg.Content.Driver {
	case "s3":
		b, err := contents3.Open(ctx, cfg.Content.S3)
		if err != nil {
			return nil, fmt.Errorf("content store: %w", err)
		}
		backend = b
	default:
		b, err := contentfs.Open(filepath.Join(cfg.DataDir, "content"))
		if err != nil {
			return nil, err
		}
		backend = b
	}
	var db *meta.DB
	var err error
	switch cfg.Metadata.Driver {
	case "postgres":
		db, err = meta.OpenPostgres(ctx, cfg.Metadata.DSN)
		if err == nil {
			if cfg.Metadata.WriteLanes > 0 {
				db.SetWriteLanes(cfg.Metadata.WriteLanes)
			}
			lanes, rtt := db.WriteLanes()
			// Lanes chosen by the round trip are shared with the nodes this
			// one hears (meta.lanesNow); set ones are this node's.
			log.Info("metadata on PostgreSQL", "writeLanes", lanes, "roundTrip", rtt.Round(time.Microsecond), "writeLanesSet", cfg.Metadata.WriteLanes > 0)
		}
	default:
		db, err = meta.OpenSQLite(ctx, filepath.Join(cfg.DataDir, "meta.db"))
	}
	if err != nil {
		return nil, err
	}
	var ring *encryption.Keyring
	if cfg.Encryption.Enabled() {
		// Every object is encrypted under the region's data keys, kept in
		// db wrapped by the key service (internal/encryption).
		ks, err := cfg.Encryption.Open()
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("encryption: %w", err)
		}
		ring = encryption.NewKeyring(db, ks, cfg.Encryption.KeyCacheTTL)
		backend = crypt.New(backend, ring)
	}
	r, err := New(ctx, cfg, log, db, content.New(backend))
	if err != nil {
		db.Close()
		if ring != nil {
			ring.Close()
		}
		return nil, err
	}
	if ring != nil {
		r.SetKeyring(ring)
	}
	return r, nil
}

// New returns a region over open stores; Close closes db.
func New(ctx context.Context, cfg Config, log *slog.Logger, db *meta.DB, store *content.Store) (*Region, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Region{
		cfg: cfg, log: log.With("region", cfg.Name), db: db, store: store,
		clock: hlc.New(cfg.Name, nil), cache: newCache(cfg.CacheBytes), feed: newFeedNotifier(),
		now: time.Now, sessions: map[string]*session{}, partials: map[string]*partial{}, outboxWake: make(chan struct{}, 1),
		space: newSpace(),
	}
	// Start the clock past every version written before a restart, even if
	// the wall clock went backwards meanwhile.
	last, err := db.MaxVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("read last version: %w", err)
	}
	r.clock.Observe(hlc.Version{Time: last})
	db.SetClock(r.clock)
	db.OnDeliveriesEnqueued(r.wakeDeliverer)
	db.SetKeepDeleted(r.keepDeleted)
	db.SetActorOf(actorOf)
	r.clearSpills() // what a crash left (spill.go)
	// A region retired by a version that marked it with a file in its data
	// directory stays retired.
	if _, err := os.Stat(filepath.Join(cfg.DataDir, retiredFlag)); err == nil && !r.Retired() {
		if err := db.Update(ctx, func(tx *meta.Tx) error { return tx.SetRegionState(ctx, retiredFlag, 1) }); err != nil {
			return nil, fmt.Errorf("carry the retired marker over: %w", err)
		}
	}
	if !db.Shared() {
		// Nobody else writes this store: what has no session is an orphan.
		if err := r.removeOrphanUploads(ctx, time.Now().Add(time.Minute)); err != nil {
			return nil, fmt.Errorf("clean staging data: %w", err)
		}
	}
	// Know the free space before serving: a region restarted on a full
	// disk refuses pushes from its first request, not from its first
	// failed write.
	r.checkSpace(ctx)
	return r, nil
}

// Name returns the region's name.
func (r *Region) Name() string { return r.cfg.Name }

// Close closes the metadata store, and the content store's connections.
func (r *Region) Close() error {
	err := r.db.Close()
	if r.keyring != nil {
		err = errors.Join(err, r.keyring.Close())
	}
	if c, ok := r.store.Backend().(io.Closer); ok {
		err = errors.Join(err, c.Close())
	}
	return err
}

// Ready reports whether the region can serve pulls: the metadata store
// answers reads and the content store answers. Whether it also takes
// pushes is Writable: a region out of space is still ready, for pulls
// (invariant 10).
func (r *Region) Ready(ctx context.Context) error {
	if err := r.db.PingRead(ctx); err != nil {
		return fmt.Errorf("metadata store: %w", err)
	}
	if c, ok := r.store.Backend().(content.Checker); ok {
		// An encrypted store checks its key too (content/crypt).
		if err := c.Check(ctx); err != nil {
			return fmt.Errorf("content store: %w", err)
		}
	}
	if r.cfg.Content.Driver == "s3" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(r.cfg.DataDir, "content")); err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	return nil
}

// Run expires idle upload sessions and prunes the audit log until ctx
// ends. It returns nil when ctx
// is cancelled.
func (r *Region) Run(ctx context.Context) error {
	interval := r.cfg.UploadTTL / 4
	if interval > 10*time.Minute {
		interval = 10 * time.Minute
	}
	if interval < time.Second {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.ExpireUploads(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "expire uploads", "error", err)
		}
		if err := r.pruneAudit(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "prune the audit log", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunLocal keeps this node's own memory in bounds until ctx ends: upload
// sessions it served that are idle longer than the upload TTL (finished
// or expired through another node, say), and broken fetches kept as long.
// Every node runs it; the leased housekeeping expires the sessions
// themselves.
func (r *Region) RunLocal(ctx context.Context) error {
	t := time.NewTicker(max(min(r.cfg.UploadTTL/4, 10*time.Minute), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cutoff := r.now().Add(-r.cfg.UploadTTL)
		r.expirePartials(ctx, cutoff)
		r.mu.Lock()
		for id, s := range r.sessions {
			if s.mu.TryLock() { // busy: in use now
				if s.used.Before(cutoff) {
					delete(r.sessions, id)
				}
				s.mu.Unlock()
			}
		}
		r.mu.Unlock()
	}
}

// newID returns a new upload session id naming this region, so a session
// can be traced (and later routed) to the region that holds its bytes.
func (r *Region) newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return r.cfg.Name + "." + hex.EncodeToString(b[:])
}

// isNotFound reports a missing row or object from either store.
func isNotFound(err error) bool {
	return errors.Is(err, meta.ErrNotFound) || errors.Is(err, content.ErrNotFound)
}

// MaxManifestSize is the largest manifest body PutManifest accepts.
func (r *Region) MaxManifestSize() int64 { return r.cfg.MaxManifestSize }

// Counts returns the metadata store's row counts per table.
func (r *Region) Counts(ctx context.Context) (map[string]int64, error) { return r.db.Counts(ctx) }

// Clock returns the region's clock.
func (r *Region) Clock() *hlc.Clock { return r.clock }

// WriteStats returns the metadata store's write transactions of this node
// and their wait for the write lock (metrics).
func (r *Region) WriteStats() (int64, time.Duration) { return r.db.WriteStats() }
