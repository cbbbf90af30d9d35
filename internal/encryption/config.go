package encryption

import (
	"errors"
	"fmt"
	"time"
)

// Config is a region's encryption at rest (region.encryption).
type Config struct {
	// Provider is where the key-encryption key is: "" (encryption off)
	// or local (a key file, KeyFile).
	Provider string `yaml:"provider"`
	// KeyFile is the local provider's key file (CreateLocalKeys makes one;
	// `georeg up --encrypt` puts one under its data directory).
	KeyFile string `yaml:"keyFile"`
	// KeyCacheTTL bounds how long an unwrapped data key stays in memory
	// (default 5m): a key service that became unreachable stops reads and
	// writes within it, and the region is not ready at once.
	KeyCacheTTL time.Duration `yaml:"keyCacheTTL"`
}

// Enabled reports whether c turns encryption on.
func (c Config) Enabled() bool { return c.Provider != "" }

// Validate checks c.
func (c Config) Validate() error {
	switch c.Provider {
	case "":
		return nil
	case "local":
		if c.KeyFile == "" {
			return errors.New("encryption.keyFile: the local provider needs a key file")
		}
	default:
		return fmt.Errorf("encryption.provider: %q is not a provider; use local", c.Provider)
	}
	if c.KeyCacheTTL < 0 {
		return fmt.Errorf("encryption.keyCacheTTL: %s is negative", c.KeyCacheTTL)
	}
	return nil
}

// Open opens c's key service.
func (c Config) Open() (KeyService, error) {
	switch c.Provider {
	case "local":
		return OpenLocalKeys(c.KeyFile)
	}
	return nil, fmt.Errorf("encryption.provider %q", c.Provider)
}
