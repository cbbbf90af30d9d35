package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/up"
)

// defaultLinksControl is where `georeg up` serves its links control.
const defaultLinksControl = "127.0.0.1:5009"

// linkCmd drives the simulated links between the regions of a running
// `georeg up`: list them, and put a fault on them (stall, black-hole,
// reset, partition) or heal them, to watch the registry ride it out.
func linkCmd() *cobra.Command {
	var control, output string
	cmd := &cobra.Command{
		Use:   "link",
		Short: "The simulated links between the regions of georeg up: list them, inject faults, heal them",
		Long: `georeg up replicates between its regions over simulated links (one per
direction of each region pair). georeg link shows them and puts faults on
them while the registry runs:

  healthy    bytes flow (with the simulated latency and bandwidth)
  stall      connections stay open, no byte moves (a hung peer)
  blackhole  as stall, and new connections never reach the region
  reset      every connection is reset, new ones too
  partition  every connection is closed, new ones too

Faults act on replication between regions only; clients still reach every
region and the front door.`,
	}
	cmd.PersistentFlags().StringVar(&control, "control", "http://"+defaultLinksControl, "the links control of georeg up (its --links-control)")
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", cli.OutputHelp)
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the links, their fault, shape and the bytes they carried",
		Example: "  georeg link list",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var links []up.LinkState
			if err := cli.New(control, 10*time.Second).Do(c.Context(), http.MethodGet, "/links", nil, &links); err != nil {
				return err
			}
			return showLinks(output, links, links)
		},
	}
	var to string
	var bandwidth int64
	set := &cobra.Command{
		Use:   "set REGION FAULT [--to REGION] [--bandwidth B]",
		Short: "Put a fault (or healthy) on every link of a region, or on those between two regions",
		Example: `  georeg link set westeurope partition        # westeurope alone, both ways
  georeg link set eastus stall --to westeurope # only eastus <-> westeurope
  georeg link set westeurope healthy           # heal`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			body := up.LinkChange{Region: args[0], To: to, Fault: args[1], Bandwidth: bandwidth}
			var changed up.LinksChanged
			if err := cli.New(control, 10*time.Second).Do(c.Context(), http.MethodPost, "/links", body, &changed); err != nil {
				return err
			}
			return showLinks(output, changed, changed.Changed)
		},
	}
	set.Flags().StringVar(&to, "to", "", "only the links between REGION and this region")
	set.Flags().Int64Var(&bandwidth, "bandwidth", 0, "also set each direction's bandwidth, bytes per second (0: unchanged)")
	cmd.AddCommand(list, set)
	return cmd
}

func showLinks(output string, v any, links []up.LinkState) error {
	var rows [][]string
	for _, l := range links {
		rows = append(rows, []string{l.From, l.To, l.Fault, l.Latency.String(),
			strconv.FormatInt(l.Bandwidth/1_000_000, 10), strconv.FormatInt(l.ToTarget, 10), strconv.FormatInt(l.ToClient, 10)})
	}
	if len(links) == 0 && custom(output) {
		fmt.Fprintln(os.Stderr, "no simulated links (georeg up --no-distance runs without them)")
	}
	return show(output, v, "FROM\tTO\tFAULT\tLATENCY\tMB/S\tBYTES SENT\tBYTES RECEIVED", rows)
}
