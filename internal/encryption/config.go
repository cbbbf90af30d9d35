package encryption

import (
	"errors"
	"fmt"
	"time"
)

// Config is a region's encryption at rest (region.encryption).
type Config struct {
	// Provider is where the key-encryption key is: "" (encryption off),
	// local (a key file, KeyFile) or kms (a Kubernetes KMS v2 plugin
	// listening on KMSSocket).
	Provider string `yaml:"provider"`
	// KeyFile is the local provider's key file (CreateLocalKeys makes one;
	// `georeg up --encrypt` puts one under its data directory).
	KeyFile string `yaml:"keyFile"`
	// KMSSocket is the kms provider's plugin's Unix socket.
	KMSSocket string `yaml:"kmsSocket"`
	// KMSTimeout bounds each call to the plugin (default 3s).
	KMSTimeout time.Duration `yaml:"kmsTimeout"`
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
	case "kms":
		if c.KMSSocket == "" {
			return errors.New("encryption.kmsSocket: the kms provider needs its plugin's Unix socket")
		}
	default:
		return fmt.Errorf("encryption.provider: %q is not a provider; use local or kms", c.Provider)
	}
	if c.KeyCacheTTL < 0 {
		return fmt.Errorf("encryption.keyCacheTTL: %s is negative", c.KeyCacheTTL)
	}
	if c.KMSTimeout < 0 {
		return fmt.Errorf("encryption.kmsTimeout: %s is negative", c.KMSTimeout)
	}
	return nil
}

// Open opens c's key service.
func (c Config) Open() (KeyService, error) {
	switch c.Provider {
	case "local":
		return OpenLocalKeys(c.KeyFile)
	case "kms":
		return OpenKMSPlugin(c.KMSSocket, c.KMSTimeout)
	}
	return nil, fmt.Errorf("encryption.provider %q", c.Provider)
}
