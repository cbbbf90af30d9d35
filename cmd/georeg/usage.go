package main

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/mgmtapi"
)

// usageCmd shows what each region stores.
func usageCmd() *cobra.Command {
	var registry, output, repository, home string
	var top int
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "usage [--repository R] [--top N]",
		Short: "What each region stores: unique and logical bytes, blobs, manifests, repositories",
		Long: `Every region's usage, by its own metadata: stored bytes count each blob
once however many repositories link it; logical bytes count every link.
Manifests are counted apart (the metadata store holds them). Then the
blob bytes each region served to clients (from its own store, or read
through from a peer) and received from each peer, in the window --since
(whole hours). Last, an estimate of what that traffic cost at the
registry's prices (georeg config prices; 0 until set) against serving
every pull from one region (--home, or the region that served the most);
docs/observability.md gives the formula.`,
		Example: `  georeg usage
  georeg usage --repository demo/app
  georeg usage --top 10 -o json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			v := url.Values{"since": {since.String()}}
			if repository != "" {
				v.Set("repository", repository)
			}
			if top > 0 {
				v.Set("top", strconv.Itoa(top))
			}
			if home != "" {
				v.Set("home", home)
			}
			var rep mgmtapi.UsageReport
			if err := cli.New(registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/usage?"+v.Encode(), nil, &rep); err != nil {
				return err
			}
			if err := printUsage(rep, output); err != nil {
				return err
			}
			if len(rep.Unreachable) > 0 {
				fmt.Fprintf(os.Stderr, "not listed: %s did not answer\n", strings.Join(rep.Unreachable, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&registry, "registry", "r", cli.Registry(), "registry (any region) to ask")
	cmd.Flags().StringVarP(&output, "output", "o", "table", cli.OutputHelp)
	cmd.Flags().StringVar(&repository, "repository", "", "also what this repository holds in each region")
	cmd.Flags().IntVar(&top, "top", 0, "also each region's N largest repositories (1 to 1000)")
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "the window of the traffic figures (whole hours)")
	cmd.Flags().StringVar(&home, "home", "", "the region a single-region registry would have had, for the estimate (default: the one that served the most)")
	return cmd
}

func printUsage(rep mgmtapi.UsageReport, output string) error {
	var rows [][]string
	for _, r := range rep.Regions {
		rows = append(rows, []string{r.Region, size(r.StoredBytes), size(r.LogicalBytes), fmt.Sprint(r.Blobs),
			fmt.Sprint(r.Manifests), size(r.ManifestBytes), fmt.Sprint(r.Repositories),
			fmt.Sprintf("%d (%s)", r.RestorableManifests, size(r.HeldBytes)),
			size(r.ServedBytes), size(r.ServedReadThroughBytes)})
	}
	if err := show(output, rep, "REGION\tSTORED\tLOGICAL\tBLOBS\tMANIFESTS\tMANIFEST BYTES\tREPOSITORIES\tSOFT-DELETED (HELD)\tSERVED\tSERVED READ-THROUGH", rows); err != nil || !custom(output) {
		return err
	}
	var pairRows, repoRows, topRows [][]string
	for _, r := range rep.Regions {
		for _, peer := range slices.Sorted(maps.Keys(r.ReceivedBytes)) {
			pairRows = append(pairRows, []string{peer, r.Region, size(r.ReceivedBytes[peer]), size(r.ReceivedReadThroughBytes[peer])})
		}
		for _, peer := range slices.Sorted(maps.Keys(r.ReceivedReadThroughBytes)) {
			if _, ok := r.ReceivedBytes[peer]; !ok {
				pairRows = append(pairRows, []string{peer, r.Region, size(0), size(r.ReceivedReadThroughBytes[peer])})
			}
		}
	}
	for _, r := range rep.Regions {
		if u := r.Repository; u != nil {
			repoRows = append(repoRows, []string{r.Region, u.Repository, size(u.LogicalBytes), fmt.Sprint(u.Blobs), fmt.Sprint(u.Manifests), fmt.Sprint(u.Tags)})
		}
		for i, u := range r.Top {
			topRows = append(topRows, []string{r.Region, fmt.Sprint(i + 1), u.Repository, size(u.LogicalBytes), fmt.Sprint(u.Blobs), fmt.Sprint(u.Manifests), fmt.Sprint(u.Tags)})
		}
	}
	// The cache: per rule and region, then the registry's: bytes served
	// from the cache that did not cross the internet again.
	var cacheRows [][]string
	type total struct{ hits, misses, upstream, served int64 }
	totals := map[string]*total{}
	for _, r := range rep.Regions {
		for _, rule := range slices.Sorted(maps.Keys(r.Cache)) {
			c := r.Cache[rule]
			cacheRows = append(cacheRows, []string{rule, r.Region, fmt.Sprint(c.Hits), fmt.Sprint(c.Misses), size(c.UpstreamBytes), size(c.ServedBytes), ""})
			t := totals[rule]
			if t == nil {
				t = &total{}
				totals[rule] = t
			}
			t.hits, t.misses, t.upstream, t.served = t.hits+c.Hits, t.misses+c.Misses, t.upstream+c.UpstreamBytes, t.served+c.ServedBytes
		}
	}
	for _, rule := range slices.Sorted(maps.Keys(totals)) {
		t := totals[rule]
		cacheRows = append(cacheRows, []string{rule, "(registry)", fmt.Sprint(t.hits), fmt.Sprint(t.misses), size(t.upstream), size(t.served), size(t.served - t.upstream)})
	}
	var estimateRows [][]string
	if e := rep.Estimate; e != nil {
		money := func(v float64) string { return fmt.Sprintf("%.2f %s", v, e.Currency) }
		estimateRows = [][]string{
			{"replication between regions", size(e.ReplicationBytes), money(e.ReplicationCost)},
			{"pulls served outside " + e.Home + ", from " + e.Home + " alone", size(e.RemotePullBytes), money(e.SingleRegionCost)},
			{"saved by pulling in-region (estimate)", "", money(e.Saved)},
			{"served to clients, if all on the internet", size(e.ServedBytes), money(e.InternetCost)},
		}
	}
	for _, t := range []struct {
		header string
		rows   [][]string
	}{
		{"FROM\tTO\tREPLICATED\tREAD-THROUGH", pairRows},
		{"REGION\tREPOSITORY\tBYTES\tBLOBS\tMANIFESTS\tTAGS", repoRows},
		{"REGION\tRANK\tREPOSITORY\tBYTES\tBLOBS\tMANIFESTS\tTAGS", topRows},
		{"CACHE RULE\tREGION\tHITS\tMISSES\tFROM UPSTREAM\tSERVED\tUPSTREAM BYTES SAVED", cacheRows},
		{"ESTIMATE\tBYTES\tCOST", estimateRows},
	} {
		if len(t.rows) == 0 {
			continue
		}
		fmt.Println()
		if err := show(output, nil, t.header, t.rows); err != nil {
			return err
		}
	}
	return nil
}

// size is n bytes for a person: 1.2 MiB.
func size(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
