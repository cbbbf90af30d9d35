package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/region"
)

// exportedEncryption is the exporting region's encryption at rest:
// whether and with which provider, never a key, a key file's path or a
// socket (each region's own, in its config file: docs/security.md).
type exportedEncryption struct {
	Enabled  bool   `yaml:"enabled"`
	Provider string `yaml:"provider,omitempty"`
}

func exportEncryption(ctx context.Context, c *cli.Client) (*exportedEncryption, error) {
	var st region.EncryptionStatus
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/encryption", nil, &st); err != nil {
		return nil, err
	}
	return &exportedEncryption{Enabled: st.Enabled, Provider: st.Provider}, nil
}

// checkEncryption refuses to apply the configuration of an encrypted
// registry to a region that does not encrypt at rest, unless allowed: a
// relocated registry is to be encrypted the same way.
func checkEncryption(ctx context.Context, c *cli.Client, want *exportedEncryption, allow bool) error {
	if want == nil || !want.Enabled {
		return nil
	}
	var st region.EncryptionStatus
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/encryption", nil, &st); err != nil {
		return err
	}
	if st.Enabled || allow {
		return nil
	}
	return fmt.Errorf("the exported registry encrypts at rest (provider %s) and region %s does not: set region.encryption in each region's configuration (docs/security.md), or pass --allow-unencrypted", want.Provider, st.Region)
}
