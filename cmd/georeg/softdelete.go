package main

import (
	"cmp"
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
	var days, historyDays int
	header := "STATUS\tDAYS\tHISTORY DAYS"
	rows := func(p region.SoftDelete) [][]string {
		return [][]string{{p.Status, strconv.Itoa(p.Days), strconv.Itoa(cmp.Or(p.HistoryDays, p.Days))}}
	}
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
			if c.Flags().Changed("history-days") {
				p.HistoryDays = historyDays
			}
			if err := client.Do(c.Context(), http.MethodPut, "/_georeg/v1/policies/soft-delete", p, &p); err != nil {
				return err
			}
			return show(*output, p, header, rows(p))
		},
	}
	update.Flags().StringVar(&status, "status", "", "enabled or disabled")
	update.Flags().IntVar(&days, "days", 7, "how long a deleted manifest stays restorable (1 to 90)")
	update.Flags().IntVar(&historyDays, "history-days", 0, "how long tag history is kept (0: --days; up to 365)")
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
					orDash(m.DeletedBy), m.RestorableUntil.Format(time.RFC3339), size(m.Size)})
			}
			return show(*output, ms, "DIGEST\tTAGS\tDELETED\tDELETED IN\tDELETED BY\tRESTORABLE UNTIL\tSIZE", rows)
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
	purge := &cobra.Command{
		Use:   "purge --name R --digest D",
		Short: "Drop what soft delete keeps of a deleted manifest now, in every region, rather than at the end of the period",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			if dgst == "" {
				return fmt.Errorf("--digest is required")
			}
			var p region.Purge
			path := "/_georeg/v1/repository/deleted?name=" + url.QueryEscape(name) + "&digest=" + url.QueryEscape(dgst)
			if err := cli.New(*registry, time.Minute).Do(c.Context(), http.MethodDelete, path, nil, &p); err != nil {
				return err
			}
			return show(*output, p, "REPOSITORY\tDIGEST\tDELETE PURGED", [][]string{{p.Repository, p.Digest, p.Deleted}})
		},
	}
	purge.Flags().StringVarP(&name, "name", "n", "", "repository")
	purge.Flags().StringVar(&dgst, "digest", "", "the deleted manifest's digest")
	restore.Flags().StringVarP(&name, "name", "n", "", "repository")
	restore.Flags().StringVar(&dgst, "digest", "", "the deleted manifest's digest")
	restore.Flags().StringVar(&tag, "tag", "", "restore with this tag only (default: the tags it had)")
	restore.Flags().BoolVar(&force, "force", false, "move tags that point at other manifests since the delete back")
	return []*cobra.Command{list, restore, purge}
}

// historyCmds are `georeg repository show-tag-history` and `restore`.
func historyCmds(registry, output *string) []*cobra.Command {
	var name, tag, at string
	var dryRun, keepNewer bool
	need := func() error {
		if name == "" {
			return fmt.Errorf("--name is required")
		}
		return nil
	}
	history := &cobra.Command{
		Use:   "show-tag-history --name R [--tag T]",
		Short: "Each move of a repository's tags (digest, time, region, actor) the region asked recorded while soft delete was on",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			path := "/_georeg/v1/repository/tag-history?name=" + url.QueryEscape(name)
			if tag != "" {
				path += "&tag=" + url.QueryEscape(tag)
			}
			var moves []region.TagHistoryEntry
			if err := cli.New(*registry, time.Minute).Do(c.Context(), http.MethodGet, path, nil, &moves); err != nil {
				return err
			}
			var rows [][]string
			for _, m := range moves {
				to := m.Digest.String()
				if m.Deleted {
					to = "(deleted)"
				}
				rows = append(rows, []string{m.Tag, to, m.At.Format(time.RFC3339Nano), m.Region, m.Actor})
			}
			return show(*output, moves, "TAG\tDIGEST\tTIME\tREGION\tACTOR", rows)
		},
	}
	history.Flags().StringVarP(&name, "name", "n", "", "repository")
	history.Flags().StringVar(&tag, "tag", "", "one tag's moves")
	restore := &cobra.Command{
		Use:   "restore --name R --time T [--dry-run] [--keep-newer]",
		Short: "Set every tag of a repository to what it was at a time (tags made later are deleted unless --keep-newer); the plan is printed",
		Example: `  georeg repository restore --name demo/app --time 2026-12-01T10:00:00Z --dry-run
  georeg repository restore --name demo/app --time 2026-12-01T10:00:00Z`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			t, err := time.Parse(time.RFC3339, at)
			if err != nil {
				return fmt.Errorf("--time %q: give an RFC 3339 time such as 2026-12-01T10:00:00Z", at)
			}
			var res region.TimeRestore
			body := mgmtapi.RestoreTimeBody{Time: t, DryRun: dryRun, KeepNewer: keepNewer}
			if err := cli.New(*registry, 10*time.Minute).Do(c.Context(), http.MethodPost, "/_georeg/v1/repository/restore-time?name="+url.QueryEscape(name), body, &res); err != nil {
				return err
			}
			var rows [][]string
			for _, s := range res.Plan {
				rows = append(rows, []string{s.Tag, orDash(s.Now.String()), orDash(s.Then.String()), s.Action})
			}
			if err := show(*output, res, "TAG\tNOW\tTHEN\tACTION", rows); err != nil || !custom(*output) {
				return err
			}
			if res.DryRun {
				fmt.Println("dry run: nothing changed")
			}
			return nil
		},
	}
	restore.Flags().StringVarP(&name, "name", "n", "", "repository")
	restore.Flags().StringVar(&at, "time", "", "the time to restore to (RFC 3339)")
	restore.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan only")
	restore.Flags().BoolVar(&keepNewer, "keep-newer", false, "keep tags made after the time")
	return []*cobra.Command{history, restore}
}

// orDash is s, or "-" for nothing.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
