package main

import (
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/cli"
)

// keysCmd lists and rotates the registry's token-signing keys (one per
// region; docs/security.md).
func keysCmd() *cobra.Command {
	cmd, registry, output := group("keys", "Token-signing keys: list, rotate")
	printKeys := func(keys []auth.KeyInfo) error {
		rows := [][]string{}
		for _, k := range keys {
			retires := ""
			if k.Retires != nil {
				retires = k.Retires.UTC().Format(time.RFC3339)
			}
			rows = append(rows, []string{k.Region, k.Kid, k.State, k.Created.UTC().Format(time.RFC3339), retires})
		}
		return show(*output, keys, "REGION\tKID\tSTATE\tCREATED\tRETIRES", rows)
	}
	list := &cobra.Command{
		Use: "list", Short: "List every region's signing keys", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var keys []auth.KeyInfo
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/keys", nil, &keys); err != nil {
				return err
			}
			return printKeys(keys)
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Give every region a new signing key: it signs within seconds, the old one verifies until its tokens expire",
		Long: `The region asked makes a new key at once, every other region within
seconds; each signs 5 s after it is made, once the other regions have its
public half. Tokens signed before keep working until they expire; the old
keys are retired once the longer of auth.tokenTTL and auth.refreshTTL
(plus a minute) has passed.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var keys []auth.KeyInfo
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodPost, "/_georeg/v1/keys/rotate", nil, &keys); err != nil {
				return err
			}
			return printKeys(keys)
		},
	}
	cmd.AddCommand(list, rotate)
	return cmd
}
