package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/mgmtapi"
)

// auditCmd lists the audit log: repository changes and logins, from every
// region (each keeps its own).
func auditCmd() *cobra.Command {
	cmd, registry, output := group("audit", "The audit log: repository changes and logins, from every region")
	var since time.Duration
	var top int
	list := &cobra.Command{
		Use:     "list [--since D] [--top N]",
		Short:   "List audit entries, newest first",
		Example: `  georeg audit list --since 1h`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var log mgmtapi.AuditLog
			path := fmt.Sprintf("/_georeg/v1/audit?since=%s&n=%d", url.QueryEscape(since.String()), top)
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, path, nil, &log); err != nil {
				return err
			}
			var rows [][]string
			for _, e := range log.Entries {
				target := e.Repo
				if e.Reference != "" {
					target += ":" + e.Reference
					if strings.HasPrefix(e.Reference, "sha") {
						target = e.Repo + "@" + e.Reference
					}
				}
				actor := e.Actor
				if actor == "" {
					actor = "(anonymous)"
				}
				rows = append(rows, []string{e.At.UTC().Format(time.RFC3339), e.Region, actor, e.Action, target, e.Outcome, e.Client, e.Detail})
			}
			if err := show(*output, log, "TIME\tREGION\tACTOR\tACTION\tTARGET\tOUTCOME\tCLIENT\tDETAIL", rows); err != nil {
				return err
			}
			if len(log.Unreachable) > 0 {
				fmt.Fprintf(os.Stderr, "not listed: the logs of %s could not be read\n", strings.Join(log.Unreachable, ", "))
			}
			return nil
		},
	}
	list.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back")
	list.Flags().IntVar(&top, "top", 100, "at most this many entries (1 to 10000)")
	cmd.AddCommand(list)
	return cmd
}
