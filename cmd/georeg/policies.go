package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/cost"
	"github.com/georeg/georeg/internal/region"
)

// quotaCmd is `georeg config quota`: storage limits of repositories and
// of the registry (Harbor's project quotas, across regions).
func quotaCmd(registry, output *string) *cobra.Command {
	cmd := &cobra.Command{Use: "quota", Short: "Storage quotas of repositories and of the registry"}
	var repository, limit string
	scope := func() string {
		if repository == "" {
			return region.RegistryScope
		}
		return repository
	}
	header := "SCOPE\tLIMIT\tUSED\tREGION"
	rows := func(vs []region.QuotaView) [][]string {
		var out [][]string
		for _, v := range vs {
			name := v.Scope
			if name == region.RegistryScope {
				name = "* (registry)"
			}
			out = append(out, []string{name, size(v.LimitBytes), size(v.UsedBytes), v.Region})
		}
		return out
	}
	update := &cobra.Command{
		Use:   "update [--repository R] --limit SIZE",
		Short: "Set the quota of a repository, or of the registry without --repository",
		Long: `Set a storage limit, for every region: a push (blob or manifest) that would
take the repository (its blobs, each once, and its manifests) or the
registry (every blob once, and every manifest) over the limit in the region
it reaches is refused with DENIED naming the limit. Content replicated from
other regions is never refused; it counts once it has arrived.`,
		Example: `  georeg config quota update --repository demo/app --limit 10GiB
  georeg config quota update --limit 2TiB`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			n, err := humanize.ParseBytes(limit)
			if err != nil || n == 0 || n > 1<<62 {
				return fmt.Errorf("--limit %q: give a size such as 500MiB, 10GiB or 2TB", limit)
			}
			var v region.QuotaView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodPut, "/_georeg/v1/policies/quotas?scope="+url.QueryEscape(scope()), region.Quota{LimitBytes: int64(n)}, &v); err != nil {
				return err
			}
			return show(*output, v, header, rows([]region.QuotaView{v}))
		},
	}
	update.Flags().StringVar(&repository, "repository", "", "the repository (without it: the registry)")
	update.Flags().StringVar(&limit, "limit", "", "the limit: 500MiB, 10GiB, 2TB...")
	_ = update.MarkFlagRequired("limit")
	del := &cobra.Command{
		Use: "delete [--repository R]", Short: "Remove the quota of a repository, or of the registry without --repository", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodDelete, "/_georeg/v1/policies/quotas?scope="+url.QueryEscape(scope()), nil, nil)
		},
	}
	del.Flags().StringVar(&repository, "repository", "", "the repository (without it: the registry)")
	showCmd := &cobra.Command{
		Use: "show", Short: "List the quotas with what counts against each in the region asked", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var vs []region.QuotaView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/policies/quotas", nil, &vs); err != nil {
				return err
			}
			return show(*output, vs, header, rows(vs))
		},
	}
	cmd.AddCommand(update, del, showCmd)
	return cmd
}

// pricesCmd is `georeg config prices`: the per-GB price table `georeg
// usage` estimates transfer costs with.
func pricesCmd(registry, output *string) *cobra.Command {
	cmd := &cobra.Command{Use: "prices", Short: "The per-GB transfer prices usage estimates costs with"}
	header := "REGION\tINTER-REGION PER GB\tINTERNET PER GB\tCURRENCY"
	rows := func(p cost.Prices) [][]string {
		money := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
		out := [][]string{{"(every region)", money(p.InterRegionPerGB), money(p.InternetPerGB), p.Currency}}
		names := make([]string, 0, len(p.Regions))
		for n := range p.Regions {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			out = append(out, []string{n, money(p.InterRegion(n)), money(p.Internet(n)), p.Currency})
		}
		return out
	}
	var currency, forRegion string
	var interRegion, internet float64
	var clear bool
	update := &cobra.Command{
		Use:   "update [--region R] [--inter-region PRICE] [--internet PRICE] [--currency C]",
		Short: "Set prices per GB (2^30 bytes) leaving a region, for every region or one",
		Long: `Set the prices per GB (2^30 bytes) of data leaving a region for another region
and for the internet. Every price is 0 until set, so usage invents no cost.
With --region, the prices of bytes leaving that region (clouds price
transfer by the region it leaves); --clear removes that region's own prices.`,
		Example: `  georeg config prices update --inter-region 0.02 --internet 0.087
  georeg config prices update --region brazilsouth --inter-region 0.16`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			client := cli.New(*registry, 30*time.Second)
			var p cost.Prices
			if err := client.Do(c.Context(), http.MethodGet, "/_georeg/v1/policies/prices", nil, &p); err != nil {
				return err
			}
			if c.Flags().Changed("currency") {
				p.Currency = currency
			}
			set := func(table *float64, own **float64, v float64) {
				if forRegion == "" {
					*table = v
					return
				}
				*own = &v
			}
			rp := p.Regions[forRegion]
			if c.Flags().Changed("inter-region") {
				set(&p.InterRegionPerGB, &rp.InterRegionPerGB, interRegion)
			}
			if c.Flags().Changed("internet") {
				set(&p.InternetPerGB, &rp.InternetPerGB, internet)
			}
			if forRegion != "" {
				if p.Regions == nil {
					p.Regions = map[string]cost.RegionPrices{}
				}
				p.Regions[forRegion] = rp
				if clear {
					delete(p.Regions, forRegion)
				}
			} else if clear {
				return fmt.Errorf("--clear needs --region")
			}
			if err := client.Do(c.Context(), http.MethodPut, "/_georeg/v1/policies/prices", p, &p); err != nil {
				return err
			}
			return show(*output, p, header, rows(p))
		},
	}
	update.Flags().StringVar(&forRegion, "region", "", "set the prices of bytes leaving this region only")
	update.Flags().Float64Var(&interRegion, "inter-region", 0, "price per GB leaving a region for another region")
	update.Flags().Float64Var(&internet, "internet", 0, "price per GB leaving a region for the internet")
	update.Flags().StringVar(&currency, "currency", "", "the currency's label (USD unless set)")
	update.Flags().BoolVar(&clear, "clear", false, "remove --region's own prices (the table's apply again)")
	showCmd := &cobra.Command{
		Use: "show", Short: "Show the price table", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var p cost.Prices
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/policies/prices", nil, &p); err != nil {
				return err
			}
			return show(*output, p, header, rows(p))
		},
	}
	cmd.AddCommand(update, showCmd)
	return cmd
}
