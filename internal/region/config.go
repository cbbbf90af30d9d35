package region

import (
	"errors"
	"fmt"
	"github.com/georeg/georeg/internal/encryption"
	"os"
	"regexp"
	"time"

	contents3 "github.com/georeg/georeg/internal/content/s3"
	"github.com/georeg/georeg/internal/meta"
)

// Config is what a region node needs to run.
type Config struct {
	// Name is the region's name, e.g. eastus: lower case letters, digits
	// and '-'. It stamps versions and names upload sessions.
	Name string `yaml:"name"`
	// DataDir holds content/ (blobs and uploads) and meta.db, unless the
	// stores are elsewhere (Content, Metadata).
	DataDir string `yaml:"dataDir"`
	// Content is where blobs are: the filesystem under DataDir (one node
	// per region), or an S3 bucket every node of the region shares.
	Content ContentConfig `yaml:"content"`
	// Metadata is where the region's metadata is: SQLite under DataDir
	// (one node per region), or a PostgreSQL database every node shares.
	Metadata MetadataConfig `yaml:"metadata"`
	// Encryption encrypts the content store at rest (docs/security.md).
	Encryption encryption.Config `yaml:"encryption"`
	// Node names this node among its region's nodes (several nodes share
	// the region's jobs by leases held in the metadata store). Unique per
	// region; default the host name, unique per Kubernetes pod.
	Node string `yaml:"node"`
	// MaxManifestSize is the largest manifest accepted (default 4 MiB).
	MaxManifestSize int64 `yaml:"maxManifestSize"`
	// UploadTTL is how long an idle upload session lives (default 24h).
	UploadTTL time.Duration `yaml:"uploadTTL"`
	// CacheBytes bounds the manifest cache (default 16 MiB; 0 keeps the
	// default, a negative value turns the cache off).
	CacheBytes int64 `yaml:"cacheBytes"`
	// GCInterval is how often garbage collection runs (default 24h; a
	// negative value turns the schedule off: it then runs only when asked).
	GCInterval time.Duration `yaml:"gcInterval"`
	// GCGrace spares blobs and links younger than it (default 24h, as long
	// as an upload session lives): a push's blobs come before its manifest.
	GCGrace time.Duration `yaml:"gcGrace"`
	// RetentionInterval is how often the retention policy is applied
	// (default 1h).
	RetentionInterval time.Duration `yaml:"retentionInterval"`
	// MinFreeSpace is the free space (bytes) below which a region on a
	// filesystem refuses pushes (STORAGE_FULL) while it keeps serving
	// pulls (default 64 MiB; negative: only a write that fails for space
	// makes the region full).
	MinFreeSpace int64 `yaml:"minFreeSpace"`
}

// ContentConfig picks the content store.
type ContentConfig struct {
	Driver string           `yaml:"driver"` // fs (default) or s3
	S3     contents3.Config `yaml:"s3"`
}

// MetadataConfig picks the metadata store.
type MetadataConfig struct {
	Driver string `yaml:"driver"` // sqlite (default) or postgres
	// DSN is the PostgreSQL database, as a URL
	// (postgres://user:password@host:5432/georeg_eastus) or key=value pairs.
	DSN string `yaml:"dsn"`
	// WriteLanes is how many write transactions a node runs at once on
	// PostgreSQL, its writes split between them by repository (0: by the
	// round trip to PostgreSQL measured at start, one lane per 0.2 ms and
	// one more, at most 8, shared among the region's nodes; a number set
	// is this node's own). More lanes cut a push's wait for its turn
	// when PostgreSQL is a network round trip away, and cost PostgreSQL
	// more CPU per write (smaller batches): docs/performance.md.
	WriteLanes int `yaml:"writeLanes"`
}

// Defaults.
const (
	DefaultMaxManifestSize = 4 << 20
	DefaultUploadTTL       = 24 * time.Hour
	DefaultCacheBytes      = 16 << 20
	DefaultMinFreeSpace    = 64 << 20
)

var regionNameRegexp = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// ReservedName is no region's name: the front door presents a peer
// credential under it (feed.FrontDoor), which may only probe.
const ReservedName = "frontdoor"

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.MaxManifestSize == 0 {
		c.MaxManifestSize = DefaultMaxManifestSize
	}
	if c.UploadTTL == 0 {
		c.UploadTTL = DefaultUploadTTL
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.GCInterval == 0 {
		c.GCInterval = 24 * time.Hour
	}
	if c.GCGrace == 0 {
		c.GCGrace = 24 * time.Hour
	}
	if c.MinFreeSpace == 0 {
		c.MinFreeSpace = DefaultMinFreeSpace
	}
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = time.Hour
	}
	if c.Content.Driver == "" {
		c.Content.Driver = "fs"
	}
	if c.Metadata.Driver == "" {
		c.Metadata.Driver = "sqlite"
	}
	if c.Node == "" {
		c.Node, _ = os.Hostname()
	}
	return c
}

// Validate reports every problem in c, each with its field name.
func (c Config) Validate() error {
	var errs []error
	if !regionNameRegexp.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("name: %q must be lower-case letters, digits and '-', starting with a letter, at most 63 characters", c.Name))
	} else if c.Name == ReservedName {
		errs = append(errs, fmt.Errorf("name: %q is reserved (the front door's credential bears it); choose another", c.Name))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("dataDir: must be set"))
	}
	if err := c.Encryption.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxManifestSize < 0 {
		errs = append(errs, fmt.Errorf("maxManifestSize: %d is negative", c.MaxManifestSize))
	}
	if c.GCGrace < 0 {
		errs = append(errs, fmt.Errorf("gcGrace: %s is negative", c.GCGrace))
	}
	if c.UploadTTL < 0 {
		errs = append(errs, fmt.Errorf("uploadTTL: %s is negative", c.UploadTTL))
	}
	switch c.Content.Driver {
	case "fs":
	case "s3":
		if err := c.Content.S3.Validate(); err != nil {
			errs = append(errs, prefixed("content.s3", err))
		}
	default:
		errs = append(errs, fmt.Errorf("content.driver: %q must be fs or s3", c.Content.Driver))
	}
	switch c.Metadata.Driver {
	case "sqlite":
		if c.Content.Driver == "s3" {
			errs = append(errs, errors.New("metadata.driver: sqlite keeps a region on one node; with content on s3 (shared by nodes) use postgres"))
		}
		if c.Metadata.WriteLanes != 0 {
			errs = append(errs, errors.New("metadata.writeLanes: applies to postgres only (SQLite has one writer)"))
		}
	case "postgres":
		if c.Metadata.DSN == "" {
			errs = append(errs, errors.New("metadata.dsn: give the PostgreSQL database (postgres://user:password@host:5432/db)"))
		}
		if c.Metadata.WriteLanes < 0 || c.Metadata.WriteLanes > meta.MaxWriteLanes {
			errs = append(errs, fmt.Errorf("metadata.writeLanes: %d must be 1 to %d (0: chosen by the round trip to PostgreSQL)", c.Metadata.WriteLanes, meta.MaxWriteLanes))
		}
	default:
		errs = append(errs, fmt.Errorf("metadata.driver: %q must be sqlite or postgres", c.Metadata.Driver))
	}
	if c.Node != "" && !nodeNameRegexp.MatchString(c.Node) {
		errs = append(errs, fmt.Errorf("node: %q must be letters, digits, '.', '_' and '-', at most 253 characters", c.Node))
	}
	return errors.Join(errs...)
}

var nodeNameRegexp = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

// prefixed puts path before the field names of err's parts.
func prefixed(path string, err error) error {
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, fmt.Errorf("%s.%w", path, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s.%w", path, err)
}
