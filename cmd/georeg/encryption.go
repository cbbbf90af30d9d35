package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/region"
)

// encryptionCmd is `georeg encryption`: a region's encryption at rest.
func encryptionCmd() *cobra.Command {
	cmd, registry, output := group("encryption", "Encryption at rest of a region's blobs: keys, rotation, progress")
	const header = "REGION\tPROVIDER\tKEY VERSION\tKEY VERSIONS IN USE\tDATA KEYS\tREWRAP PENDING\tPLAINTEXT BLOBS\tENCRYPTED\tERROR"
	rows := func(s region.EncryptionStatus) [][]string {
		if !s.Enabled {
			return [][]string{{s.Region, "(off)", "", "", "", "", "", "", ""}}
		}
		var inUse []string
		for v, n := range s.KeyVersionsInUse {
			inUse = append(inUse, fmt.Sprintf("%s (%d)", v, n))
		}
		sort.Strings(inUse)
		errText := s.KeyError
		if errText == "" {
			errText = s.LastError
		}
		return [][]string{{s.Region, s.Provider, s.KeyVersion, strings.Join(inUse, ", "), fmt.Sprint(s.DataKeys),
			fmt.Sprint(s.RewrapPending), fmt.Sprint(s.PlaintextBlobs), fmt.Sprint(s.Encrypted), errText}}
	}
	status := &cobra.Command{
		Use: "status", Short: "Show the region's key versions in use and the progress of re-wrapping and encrypting in place", Args: cobra.NoArgs,
		Example: `  georeg encryption status --registry http://127.0.0.1:5002 -o json`,
		RunE: func(c *cobra.Command, _ []string) error {
			var st region.EncryptionStatus
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/encryption", nil, &st); err != nil {
				return err
			}
			return show(*output, st, header, rows(st))
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Switch the region to a new key version for new data now; older data keys are re-wrapped in the background",
		Long: `Switch the region to a new key version for new data at once: with the local provider a new
key is added to the key file; with a KMS plugin, rotate the key in the KMS first (the plugin
then names the new version), and this makes a new data key under it now instead of within
30 seconds. Data keys wrapped by older versions are re-wrapped in the background (no blob is
rewritten); 'georeg encryption status' shows the versions still in use.`,
		Args:    cobra.NoArgs,
		Example: `  georeg encryption rotate --registry http://127.0.0.1:5002`,
		RunE: func(c *cobra.Command, _ []string) error {
			var st region.EncryptionStatus
			if err := cli.New(*registry, time.Minute).Do(c.Context(), http.MethodPost, "/_georeg/v1/encryption/rotate", nil, &st); err != nil {
				return err
			}
			return show(*output, st, header, rows(st))
		},
	}
	cmd.AddCommand(status, rotate)
	return cmd
}
