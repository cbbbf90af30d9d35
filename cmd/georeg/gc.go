package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/region"
)

// gcCmd runs and shows garbage collection of one region (each region
// collects its own storage; --registry names the region).
func gcCmd() *cobra.Command {
	cmd, registry, output := group("gc", "Garbage collection of unreferenced blobs, per region")
	var dry bool
	rows := func(r region.GCReport) [][]string {
		return [][]string{{r.Region, fmt.Sprint(r.DryRun), r.Started.UTC().Format(time.RFC3339), r.Duration.Round(time.Millisecond).String(),
			fmt.Sprint(r.LinksRemoved), fmt.Sprint(r.BlobsDeleted), mib(r.BytesFreed), fmt.Sprint(r.BlobsKept), r.Error}}
	}
	const header = "REGION\tDRY RUN\tSTARTED\tTOOK\tLINKS REMOVED\tBLOBS DELETED\tFREED\tBLOBS KEPT\tERROR"
	run := &cobra.Command{
		Use: "run [--dry-run]", Short: "Collect the region's garbage now and print the report", Args: cobra.NoArgs,
		Example: `  georeg gc run --dry-run --registry http://127.0.0.1:5002`,
		RunE: func(c *cobra.Command, _ []string) error {
			var rep region.GCReport
			path := "/_georeg/v1/gc"
			if dry {
				path += "?dryRun=true"
			}
			if err := cli.New(*registry, time.Hour).Do(c.Context(), http.MethodPost, path, nil, &rep); err != nil {
				return err
			}
			return show(*output, rep, header, rows(rep))
		},
	}
	run.Flags().BoolVar(&dry, "dry-run", false, "report what would be freed, change nothing")
	showCmd := &cobra.Command{
		Use: "show", Short: "Show the region's last collection", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var rep region.GCReport
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/gc", nil, &rep); err != nil {
				return err
			}
			return show(*output, rep, header, rows(rep))
		},
	}
	cmd.AddCommand(run, showCmd)
	return cmd
}
