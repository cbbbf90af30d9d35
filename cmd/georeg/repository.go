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

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/region"
)

// repositoryCmd mirrors `az acr repository`; manifestCmd `az acr
// manifest`; configCmd `az acr config` (retention).
func repositoryCmd() *cobra.Command {
	cmd, registry, output := group("repository", "Repositories: list, show, show-tags, show-manifests, update (locks), delete, show-tag-history, restore")
	var name, image, orderby, write, del string
	q := func() string { return "?name=" + url.QueryEscape(name) }
	need := func() error {
		if name == "" {
			return fmt.Errorf("--name is required")
		}
		return nil
	}
	client := func() *cli.Client { return cli.New(*registry, time.Minute) }
	list := &cobra.Command{
		Use: "list", Short: "List repositories with their tag counts", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var rs []meta.RepoCount
			if err := client().Do(c.Context(), http.MethodGet, "/_georeg/v1/repositories", nil, &rs); err != nil {
				return err
			}
			var rows [][]string
			for _, r := range rs {
				rows = append(rows, []string{r.Repo, strconv.Itoa(r.Tags)})
			}
			return show(*output, rs, "REPOSITORY\tTAGS", rows)
		},
	}
	showCmd := &cobra.Command{
		Use: "show --name R", Short: "Show a repository with its lock flags and its size in each region", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			var v mgmtapi.RepositoryView
			if err := client().Do(c.Context(), http.MethodGet, "/_georeg/v1/repository"+q(), nil, &v); err != nil {
				return err
			}
			err := show(*output, v, "REPOSITORY\tTAGS\tMANIFESTS\tWRITE ENABLED\tDELETE ENABLED",
				[][]string{{v.Name, strconv.Itoa(v.Tags), strconv.Itoa(v.Manifests), strconv.FormatBool(v.Attributes.WriteEnabled), strconv.FormatBool(v.Attributes.DeleteEnabled)}})
			if err != nil || !custom(*output) {
				return err
			}
			var rows [][]string
			for _, s := range v.Sizes {
				rows = append(rows, []string{s.Region, size(s.Bytes)})
			}
			fmt.Println()
			if err := show(*output, nil, "REGION\tSIZE", rows); err != nil {
				return err
			}
			if len(v.Unreachable) > 0 {
				fmt.Fprintf(os.Stderr, "size not known in %s: did not answer\n", strings.Join(v.Unreachable, ", "))
			}
			return nil
		},
	}
	showTags := &cobra.Command{
		Use: "show-tags --name R [--orderby time_desc|time_asc]", Short: "List a repository's tags", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			path := "/_georeg/v1/repository/tags" + q()
			if orderby != "" {
				path += "&orderby=" + url.QueryEscape(orderby)
			}
			var tags []mgmtapi.TagView
			if err := client().Do(c.Context(), http.MethodGet, path, nil, &tags); err != nil {
				return err
			}
			var rows [][]string
			for _, t := range tags {
				rows = append(rows, []string{t.Name, t.Digest.String(), t.Updated.UTC().Format(time.RFC3339), t.Origin,
					strconv.FormatBool(t.Attributes.WriteEnabled), strconv.FormatBool(t.Attributes.DeleteEnabled)})
			}
			return show(*output, tags, "TAG\tDIGEST\tLAST UPDATE\tORIGIN\tWRITE ENABLED\tDELETE ENABLED", rows)
		},
	}
	showTags.Flags().StringVar(&orderby, "orderby", "", "time_desc, time_asc (default: by name)")
	showManifests := &cobra.Command{
		Use: "show-manifests --name R", Short: "List a repository's manifests with their tags", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			return printManifests(c, client(), q(), *output)
		},
	}
	update := &cobra.Command{
		Use:     "update --name R [--image TAG] [--write-enabled true|false] [--delete-enabled true|false]",
		Short:   "Lock or unlock a repository or an image (a tag): in every region",
		Example: `  georeg repository update --name app/web --image v1.0 --write-enabled false --delete-enabled false`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			var body mgmtapi.LockBody
			for flag, dst := range map[string]**bool{"write-enabled": &body.WriteEnabled, "delete-enabled": &body.DeleteEnabled} {
				if !c.Flags().Changed(flag) {
					continue
				}
				v := write
				if flag == "delete-enabled" {
					v = del
				}
				b, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("--%s %q: true or false", flag, v)
				}
				*dst = &b
			}
			path := "/_georeg/v1/repository" + q()
			if image != "" {
				path += "&image=" + url.QueryEscape(image)
			}
			var out map[string]any
			if err := client().Do(c.Context(), http.MethodPatch, path, body, &out); err != nil {
				return err
			}
			var rows [][]string
			for _, k := range slices.Sorted(maps.Keys(out)) {
				rows = append(rows, []string{k, fmt.Sprint(out[k])})
			}
			return show(*output, out, "FIELD\tVALUE", rows)
		},
	}
	update.Flags().StringVar(&image, "image", "", "a tag of the repository: lock that image only")
	update.Flags().StringVar(&write, "write-enabled", "", "true or false")
	update.Flags().StringVar(&del, "delete-enabled", "", "true or false")
	deleteCmd := &cobra.Command{
		Use: "delete --name R", Short: "Delete every manifest and tag of a repository, in every region", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			var out mgmtapi.RepositoryDeleted
			if err := client().Do(c.Context(), http.MethodDelete, "/_georeg/v1/repository"+q(), nil, &out); err != nil {
				return err
			}
			fmt.Printf("deleted %s: %d manifests, %d tags\n", out.Name, len(out.Manifests), len(out.Tags))
			return nil
		},
	}
	for _, sub := range []*cobra.Command{showCmd, showTags, showManifests, update, deleteCmd} {
		sub.Flags().StringVarP(&name, "name", "n", "", "repository")
	}
	cmd.AddCommand(list, showCmd, showTags, showManifests, update, deleteCmd)
	cmd.AddCommand(historyCmds(registry, output)...)
	return cmd
}

func printManifests(c *cobra.Command, client *cli.Client, q, output string) error {
	var ms []mgmtapi.ManifestView
	if err := client.Do(c.Context(), http.MethodGet, "/_georeg/v1/repository/manifests"+q, nil, &ms); err != nil {
		return err
	}
	var rows [][]string
	for _, m := range ms {
		rows = append(rows, []string{m.Digest.String(), strings.Join(m.Tags, ","), m.MediaType, strconv.FormatInt(m.Size, 10),
			m.Created.UTC().Format(time.RFC3339), strconv.FormatBool(m.Attributes.WriteEnabled), strconv.FormatBool(m.Attributes.DeleteEnabled)})
	}
	return show(output, ms, "DIGEST\tTAGS\tMEDIA TYPE\tSIZE\tCREATED\tWRITE ENABLED\tDELETE ENABLED", rows)
}

func manifestCmd() *cobra.Command {
	cmd, registry, output := group("manifest", "Manifests: list-metadata, list-deleted, restore, purge")
	var name string
	list := &cobra.Command{
		Use: "list-metadata --name R", Short: "List a repository's manifests with tags, sizes and lock flags", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if name == "" {
				return fmt.Errorf("--name is required")
			}
			return printManifests(c, cli.New(*registry, time.Minute), "?name="+url.QueryEscape(name), *output)
		},
	}
	list.Flags().StringVarP(&name, "name", "n", "", "repository")
	cmd.AddCommand(list)
	cmd.AddCommand(deletedCmds(registry, output)...)
	return cmd
}

func configCmd() *cobra.Command {
	cmd, registry, output := group("config", "Registry configuration: retention, soft delete, quotas, prices, export, apply")
	retention := &cobra.Command{Use: "retention", Short: "Retention of untagged manifests"}
	var status, typ string
	var days int
	rows := func(p region.Retention) [][]string {
		return [][]string{{p.Status, strconv.Itoa(p.Days), p.Type}}
	}
	update := &cobra.Command{
		Use:     "update --status enabled|disabled --days N --type UntaggedManifests",
		Short:   "Set the retention policy (every region sweeps what it pushed)",
		Example: `  georeg config retention update --status enabled --days 7 --type UntaggedManifests`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			client := cli.New(*registry, 30*time.Second)
			var p region.Retention
			if err := client.Do(c.Context(), http.MethodGet, "/_georeg/v1/policies/retention", nil, &p); err != nil {
				return err
			}
			if c.Flags().Changed("status") {
				p.Status = status
			}
			if c.Flags().Changed("days") {
				p.Days = days
			}
			if c.Flags().Changed("type") {
				p.Type = typ
			}
			if err := client.Do(c.Context(), http.MethodPut, "/_georeg/v1/policies/retention", p, &p); err != nil {
				return err
			}
			return show(*output, p, "STATUS\tDAYS\tTYPE", rows(p))
		},
	}
	update.Flags().StringVar(&status, "status", "", "enabled or disabled")
	update.Flags().IntVar(&days, "days", 7, "delete untagged manifests older than this (0 to 365)")
	update.Flags().StringVar(&typ, "type", "UntaggedManifests", "UntaggedManifests")
	showCmd := &cobra.Command{
		Use: "show", Short: "Show the retention policy", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var p region.Retention
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/policies/retention", nil, &p); err != nil {
				return err
			}
			return show(*output, p, "STATUS\tDAYS\tTYPE", rows(p))
		},
	}
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "Sweep now in the region asked: untagged manifests by the policy, cached images by their rules' --evict-untouched",
		Long: `Runs what every region runs each retentionInterval (1h unless set): the
region asked deletes the untagged manifests it sweeps (those it pushed)
older than the policy's days, and evicts the cached images it fetched that
no region pulled for their cache rule's --evict-untouched period. Each
delete replicates; other regions sweep what they pushed on their own runs.`,
		Example: `  georeg config retention run -r https://eastus.example.com`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var rep region.RetentionReport
			if err := cli.New(*registry, 11*time.Minute).Do(c.Context(), http.MethodPost, "/_georeg/v1/policies/retention/run", nil, &rep); err != nil {
				return err
			}
			return show(*output, rep, "REGION\tDELETED\tEVICTED\tKEPT BY LOCKS", [][]string{{rep.Region,
				strconv.Itoa(len(rep.Deleted)), strconv.Itoa(len(rep.Evicted)), strconv.Itoa(rep.Kept + rep.EvictKept)}})
		},
	}
	retention.AddCommand(update, showCmd, runCmd)
	cmd.AddCommand(retention, softDeleteCmd(registry, output), quotaCmd(registry, output), pricesCmd(registry, output))
	configExportApply(cmd, registry)
	return cmd
}
