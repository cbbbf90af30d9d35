package region

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Config is what a region node needs to run.
type Config struct {
	// Name is the region's name, e.g. eastus: lower case letters, digits
	// and '-'. It stamps versions and names upload sessions.
	Name string `yaml:"name"`
	// DataDir holds blobs/, uploads/ and meta.db.
	DataDir string `yaml:"dataDir"`
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
}

// Defaults.
const (
	DefaultMaxManifestSize = 4 << 20
	DefaultUploadTTL       = 24 * time.Hour
	DefaultCacheBytes      = 16 << 20
)

var regionNameRegexp = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

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
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = time.Hour
	}
	return c
}

// Validate reports every problem in c, each with its field name.
func (c Config) Validate() error {
	var errs []error
	if !regionNameRegexp.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("name: %q must be lower-case letters, digits and '-', starting with a letter, at most 63 characters", c.Name))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("dataDir: must be set"))
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
	return errors.Join(errs...)
}
