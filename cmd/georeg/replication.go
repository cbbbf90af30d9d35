package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/replicate"
)

// replicationCmd mirrors `az acr replication`: any region answers, since
// replicas are settings that replicate (there is no home region).
func replicationCmd() *cobra.Command {
	var registry, output string
	client := func() *cli.Client {
		return cli.New(registry, 30*time.Second)
	}
	cmd := &cobra.Command{Use: "replication", Short: "Regions of the registry: create, list, show, update, delete"}
	cmd.PersistentFlags().StringVarP(&registry, "registry", "r", cli.Registry(), "registry (any region) to ask")
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", cli.OutputHelp)

	var name, endpoint string
	var wait bool
	var timeout time.Duration
	create := &cobra.Command{
		Use:     "create --name R --endpoint URL",
		Short:   "Register a region; it backfills from the others (--wait shows its progress until Ready)",
		Example: `  georeg replication create --name brazilsouth --endpoint http://127.0.0.1:5004 --wait`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || endpoint == "" {
				return errors.New("--name and --endpoint are required")
			}
			c := client()
			rep, err := c.PutReplication(cmd.Context(), name, endpoint, nil)
			if err != nil {
				return err
			}
			if wait {
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				defer cancel()
				if rep, err = waitReady(ctx, c, name); err != nil {
					return err
				}
			}
			return printReplication(*rep, output)
		},
	}
	create.Flags().StringVar(&name, "name", "", "region name")
	create.Flags().StringVar(&endpoint, "endpoint", "", "the region's base URL, http(s)://host:port")
	create.Flags().BoolVar(&wait, "wait", false, "wait until the region is Ready, showing its backfill progress")
	create.Flags().DurationVar(&timeout, "timeout", time.Hour, "with --wait, how long to wait")

	list := &cobra.Command{
		Use: "list", Short: "List the registry's regions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reps, err := client().Replications(cmd.Context())
			if err != nil {
				return err
			}
			return printReplications(reps, output)
		},
	}
	showCmd := &cobra.Command{
		Use: "show NAME", Short: "Show a region with its replication status", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := client().Replication(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printReplication(*rep, output)
		},
	}
	var enabled string
	update := &cobra.Command{
		Use:     "update NAME --region-endpoint-enabled true|false",
		Short:   "Turn routing to a region on or off (data keeps syncing to it)",
		Example: `  georeg replication update westeurope --region-endpoint-enabled false`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			on, err := strconv.ParseBool(enabled)
			if err != nil {
				return fmt.Errorf("--region-endpoint-enabled %q: give true or false", enabled)
			}
			rep, err := client().PutReplication(cmd.Context(), args[0], "", &on)
			if err != nil {
				return err
			}
			return printReplication(*rep, output)
		},
	}
	update.Flags().StringVar(&enabled, "region-endpoint-enabled", "", "true or false")
	_ = update.MarkFlagRequired("region-endpoint-enabled")
	var purge bool
	del := &cobra.Command{
		Use: "delete NAME [--purge]", Short: "Remove a registered region: every region stops replicating with it (--purge also deletes its data)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := client().DeleteReplication(cmd.Context(), args[0], purge); err != nil {
				return err
			}
			fmt.Printf("deleted replication %s\n", args[0])
			return nil
		},
	}
	del.Flags().BoolVar(&purge, "purge", false, "also delete the region's data; it then replicates with nobody")
	var secretFile string
	probeKey := &cobra.Command{
		Use:   "probe-key --replication-secret-file F",
		Short: "Print the probe key the front door is configured with (route.yaml probeKey)",
		Long: `The front door reads regions' health and replication state with tokens
signed by a probe key derived from the replication secret. It is given
only that key, never the secret, so it cannot act as a region.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := os.ReadFile(secretFile)
			if err != nil {
				return fmt.Errorf("--replication-secret-file: %w", err)
			}
			secret := strings.TrimSpace(string(b))
			if secret == "" {
				return fmt.Errorf("--replication-secret-file: %s is empty", secretFile)
			}
			fmt.Println(peerauth.ProbeKey(secret))
			return nil
		},
	}
	probeKey.Flags().StringVar(&secretFile, "replication-secret-file", "", "file holding the registry's replication secret")
	_ = probeKey.MarkFlagRequired("replication-secret-file")
	cmd.AddCommand(create, list, showCmd, update, del, probeKey)
	return cmd
}

// unreachableFor is how long --wait lets a region not answer before it
// gives up: a region just started answers within seconds.
const unreachableFor = 30 * time.Second

// waitReady polls a region until it reports Ready, printing how far its
// backfill has come (events applied of its peers' feeds): on a terminal
// one line redrawn, otherwise a line every few seconds. It fails at once
// when waiting cannot help — the region and the registry refuse each
// other's credentials (their replication secrets differ) — and when the
// region has not answered for unreachableFor.
func waitReady(ctx context.Context, c *cli.Client, name string) (*mgmtapi.Replication, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	out := newProgress()
	answered := start
	for {
		rep, err := c.Replication(ctx, name)
		if err == nil {
			if cause := refusal(rep); cause != "" {
				out.end()
				return nil, fmt.Errorf("replication %s cannot become Ready: %s — the region and this registry must share one replication secret (replication.secret)", name, cause)
			}
			if rep.Status != nil {
				answered = time.Now()
				out.show(backfillStep(fmt.Sprintf("%s: %s %s,", name, rep.Status.State, time.Since(start).Round(time.Second)), rep.Status.Progress),
					rep.Status.State == replicate.StateReady)
				if rep.Status.State == replicate.StateReady {
					out.end()
					return rep, nil
				}
			} else if time.Since(answered) > unreachableFor {
				out.end()
				return nil, fmt.Errorf("replication %s has not answered at %s for %s: %s", name, rep.Endpoint, unreachableFor, rep.StatusError)
			}
		}
		select {
		case <-ctx.Done():
			out.end()
			return nil, fmt.Errorf("replication %s is not Ready after %s (last: %v)", name, time.Since(start).Round(time.Second), err)
		case <-tick.C:
		}
	}
}

// refusal returns why a region and the registry refuse each other, if
// they do: what either said when asked (UNAUTHORIZED, DENIED), or that
// either could not prove its name to the other (peerauth.ErrUnproven).
func refusal(rep *mgmtapi.Replication) string {
	refused := func(s string) bool {
		return strings.Contains(s, "UNAUTHORIZED") || strings.Contains(s, "DENIED") || strings.Contains(s, peerauth.ErrUnproven.Error())
	}
	if refused(rep.StatusError) {
		return "asked for its status, it answered " + rep.StatusError
	}
	if rep.Status == nil {
		return ""
	}
	for _, w := range rep.Status.Waiting {
		if refused(w) {
			return "it waits for " + w
		}
	}
	for _, p := range rep.Status.Peers {
		if refused(p.LastError) {
			return p.Peer + " answered it " + p.LastError
		}
	}
	return ""
}

// backfillStep renders a region's backfill progress: objects applied of
// its peers' feeds and blob bytes, rate and ETA.
func backfillStep(what string, p replicate.Progress) step {
	if p.BytesTotal == 0 && p.ObjectsTotal == 0 {
		return step{what: what + " (nothing counted yet)"}
	}
	eta := ""
	if p.ETASeconds > 0 {
		eta = ", ETA " + (time.Duration(p.ETASeconds * float64(time.Second))).Round(time.Second).String()
	}
	return step{what: fmt.Sprintf("%s %d/%d objects, %s/s%s", what, p.Objects, p.ObjectsTotal, mib(int64(p.RateBytesPerSecond)), eta),
		done: p.Bytes, total: p.BytesTotal}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// printReplication prints one region (create, show, update): an object
// in json and yaml, a row in a table.
func printReplication(rep mgmtapi.Replication, output string) error {
	if !custom(output) {
		return show(output, rep, "", nil)
	}
	return printReplications([]mgmtapi.Replication{rep}, output)
}

// printReplications prints a list of regions: an array in json and yaml.
func printReplications(reps []mgmtapi.Replication, output string) error {
	if !custom(output) {
		return show(output, reps, "", nil)
	}
	switch output {
	case "tsv", "table":
		tw, flush := rows(output)
		sep := "\t"
		if output == "table" {
			fmt.Fprintln(tw, "NAME\tENDPOINT\tROUTING\tSOURCE\tSTATE\tPUSHES")
		}
		for _, r := range reps {
			state := r.State
			if r.Status == nil && r.StatusError != "" {
				state += " (" + r.StatusError + ")"
			}
			pushes := "?"
			switch {
			case r.Writable == nil:
			case *r.Writable:
				pushes = "yes"
			default:
				pushes = "no, pulls only: " + r.NotWritable
			}
			fmt.Fprintln(tw, r.Name+sep+r.Endpoint+sep+strconv.FormatBool(r.RegionEndpointEnabled)+sep+r.Source+sep+state+sep+pushes)
		}
		if err := flush(); err != nil || output == "tsv" {
			return err
		}
		for _, r := range reps {
			if r.Status == nil || len(r.Status.Peers) == 0 {
				continue
			}
			fmt.Printf("\n%s\n", plainLine(backfillStep(r.Name+":", r.Status.Progress)))
			for _, w := range r.Status.Waiting {
				fmt.Printf("  waiting for %s\n", w)
			}
			fmt.Printf("%s replicates from:\n", r.Name)
			pw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(pw, "PEER\tSTATE\tREQUIRED\tAPPLIED\tHEAD\tBEHIND\tBACKLOG\tOLDEST WAITING\tLAST LAG\tLAST SUCCESS\tNODE\tLAST ERROR")
			for _, p := range r.Status.Peers {
				last := ""
				if !p.LastSuccess.IsZero() {
					last = p.LastSuccess.UTC().Format(time.RFC3339)
				}
				oldest := "-"
				if p.OldestUnappliedSeconds > 0 {
					oldest = fmt.Sprintf("%.3fs", p.OldestUnappliedSeconds)
				}
				fmt.Fprintf(pw, "%s\t%s\t%t\t%d\t%d\t%d\t%s\t%s\t%.3fs\t%s\t%s\t%s\n", p.Peer, p.State, p.Required, p.Applied, p.Head, p.Behind, mib(p.Backlog), oldest, p.LagSeconds, last, p.Node, p.LastError)
			}
			_ = pw.Flush()
		}
		return nil
	}
	return fmt.Errorf("--output %q: use table, json or tsv", output)
}
