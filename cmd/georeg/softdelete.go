package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/region"
)

// softDeleteCmd is `georeg config soft-delete` (ACR's `az acr config
// soft-delete`).
func softDeleteCmd(registry, output *string) *cobra.Command {
	cmd := &cobra.Command{Use: "soft-delete", Short: "Keep deleted manifests restorable for a period, in every region"}
	var status string
	var days int
	header := "STATUS\tDAYS"
	rows := func(p region.SoftDelete) [][]string { return [][]string{{p.Status, strconv.Itoa(p.Days)}} }
	update := &cobra.Command{
		Use:     "update --status enabled|disabled [--days N]",
		Short:   "Set the soft-delete policy (every region keeps what is deleted from then on)",
		Example: `  georeg config soft-delete update --status enabled --days 7`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			client := cli.New(*registry, 30*time.Second)
			var p region.SoftDelete
			if err := client.Do(c.Context(), http.MethodGet, "/_georeg/v1/policies/soft-delete", nil, &p); err != nil {
				return err
			}
			if c.Flags().Changed("status") {
				p.Status = status
			}
			if c.Flags().Changed("days") {
				p.Days = days
			}
			if err := client.Do(c.Context(), http.MethodPut, "/_georeg/v1/policies/soft-delete", p, &p); err != nil {
				return err
			}
			return show(*output, p, header, rows(p))
		},
	}
	update.Flags().StringVar(&status, "status", "", "enabled or disabled")
	update.Flags().IntVar(&days, "days", 7, "how long a deleted manifest stays restorable (1 to 90)")
	showCmd := &cobra.Command{
		Use: "show", Short: "Show the soft-delete policy", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var p region.SoftDelete
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/policies/soft-delete", nil, &p); err != nil {
				return err
			}
			return show(*output, p, header, rows(p))
		},
	}
	cmd.AddCommand(update, showCmd)
	return cmd
}

// deletedCmds are `georeg manifest list-deleted` and `restore`.
func deletedCmds(registry, output *string) []*cobra.Command {
	var name, dgst, tag string
	var force bool
	need := func() error {
		if name == "" {
			return fmt.Errorf("--name is required")
		}
		return nil
	}
	list := &cobra.Command{
		Use:   "list-deleted --name R",
		Short: "List a repository's deleted manifests that can be restored (soft delete), as the region asked holds them",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			var ms []region.DeletedManifest
			if err := cli.New(*registry, time.Minute).Do(c.Context(), http.MethodGet, "/_georeg/v1/repository/deleted?name="+url.QueryEscape(name), nil, &ms); err != nil {
				return err
			}
			var rows [][]string
			for _, m := range ms {
				rows = append(rows, []string{m.Digest.String(), strings.Join(m.Tags, ","), m.DeletedAt.Format(time.RFC3339), m.DeletedIn,
					m.RestorableUntil.Format(time.RFC3339), size(m.Size)})
			}
			return show(*output, ms, "DIGEST\tTAGS\tDELETED\tDELETED IN\tRESTORABLE UNTIL\tSIZE", rows)
		},
	}
	list.Flags().StringVarP(&name, "name", "n", "", "repository")
	restore := &cobra.Command{
		Use:   "restore --name R --digest D [--tag T] [--force]",
		Short: "Restore a deleted manifest with the tags it had (or --tag), as a push that wins over the delete in every region",
		Example: `  georeg manifest restore --name demo/app --digest sha256:... 
  georeg manifest restore --name demo/app --digest sha256:... --tag v1 --force`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			if dgst == "" {
				return fmt.Errorf("--digest is required")
			}
			var res region.RestoreResult
			body := mgmtapi.RestoreBody{Digest: dgst, Tag: tag, Force: force}
			if err := cli.New(*registry, time.Minute).Do(c.Context(), http.MethodPost, "/_georeg/v1/repository/restore?name="+url.QueryEscape(name), body, &res); err != nil {
				return err
			}
			return show(*output, res, "REPOSITORY\tDIGEST\tTAGS\tREGION", [][]string{{res.Repository, res.Digest.String(), strings.Join(res.Tags, ","), res.Region}})
		},
	}
	restore.Flags().StringVarP(&name, "name", "n", "", "repository")
	restore.Flags().StringVar(&dgst, "digest", "", "the deleted manifest's digest")
	restore.Flags().StringVar(&tag, "tag", "", "restore with this tag only (default: the tags it had)")
	restore.Flags().BoolVar(&force, "force", false, "move tags that point at other manifests since the delete back")
	return []*cobra.Command{list, restore}
}
