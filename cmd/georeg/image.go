package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/ocierr"
)

// target resolves which registry to ask for ref.
func target(ref, registry string) (cli.Ref, *cli.Client, error) {
	r, err := cli.ParseRef(ref)
	if err != nil {
		return r, nil, err
	}
	base := registry
	if r.Registry != "" && registry == cli.DefaultRegistry {
		base = r.Registry
	}
	return r, cli.New(base, 30*time.Second), nil
}

func imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Images across regions"}
	var registry, output string
	status := &cobra.Command{
		Use:   "status REF",
		Short: "Which regions hold an image complete, and which are pending",
		Example: `  georeg image status demo/app:v1
  georeg image status 127.0.0.1:5002/demo/app@sha256:... --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, c, err := target(args[0], registry)
			if err != nil {
				return err
			}
			st, err := c.ImageStatus(cmd.Context(), ref.Repository, ref.Reference)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Base, err)
			}
			return printStatus(st, output)
		},
	}
	status.Flags().StringVar(&registry, "registry", cli.DefaultRegistry, "registry (or region) to ask")
	status.Flags().StringVar(&output, "output", "table", "table, json or tsv")
	cmd.AddCommand(status)
	return cmd
}

func printStatus(st *mgmtapi.ImageStatus, output string) error {
	switch output {
	case "json":
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	case "tsv":
		for _, r := range st.Regions {
			fmt.Printf("%s\t%s\t%s\n", r.Name, r.State, since(r))
		}
		return nil
	case "table":
		fmt.Printf("%s:%s  %s  (as %s knows it)\n", st.Repository, st.Reference, st.Digest, st.Region)
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REGION\tSTATE\tSINCE")
		for _, r := range st.Regions {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.State, since(r))
		}
		return tw.Flush()
	}
	return fmt.Errorf("--output %q: use table, json or tsv", output)
}

func since(r mgmtapi.RegionState) string {
	if r.Since == nil {
		return ""
	}
	return r.Since.UTC().Format(time.RFC3339Nano)
}

func waitCmd() *cobra.Command {
	var registry, regionName string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait REF --region R",
		Short: "Wait until an image is pullable, complete, in a region",
		Long: `wait resolves REF where the registry (or the region named in REF) knows it,
then waits until region R holds that exact manifest complete, and its tag
points at it. It exits 0 then, and 1 with a clear message on timeout.`,
		Example: `  georeg wait demo/app:v1 --region westeurope --timeout 60s`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if regionName == "" {
				return errors.New("--region is required")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			ref, c, err := target(args[0], registry)
			if err != nil {
				return err
			}
			err = waitFor(ctx, ref, c, regionName)
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("timed out after %s: %s:%s is not pullable in %s yet%s",
					timeout, ref.Repository, ref.Reference, regionName, lastState(cmd.Context(), ref, c))
			}
			if err == nil {
				fmt.Printf("%s:%s is pullable in %s\n", ref.Repository, ref.Reference, regionName)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&registry, "registry", cli.DefaultRegistry, "registry (or region) that knows REF")
	cmd.Flags().StringVar(&regionName, "region", "", "region to wait for")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait")
	return cmd
}

// waitFor polls until region holds ref as c knows it.
func waitFor(ctx context.Context, ref cli.Ref, c *cli.Client, regionName string) error {
	var endpoint string
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if endpoint == "" {
			if regions, err := c.Regions(ctx); err == nil {
				var names []string
				for _, r := range regions.Regions {
					names = append(names, r.Name)
					if r.Name == regionName {
						endpoint = r.Endpoint
					}
				}
				if endpoint == "" {
					return fmt.Errorf("region %q is not in this registry; its regions are %s", regionName, strings.Join(names, ", "))
				}
			}
		}
		if endpoint != "" {
			want, err := c.ImageStatus(ctx, ref.Repository, ref.Reference)
			if err == nil {
				rc := &cli.Client{Base: endpoint, HTTP: c.HTTP, User: c.User, Password: c.Password}
				got, err := rc.ImageStatus(ctx, ref.Repository, ref.Reference)
				if err == nil && got.Digest == want.Digest && present(got, regionName) {
					return nil
				}
			} else if oe := (*ocierr.Error)(nil); errors.As(err, &oe) && oe.Code != ocierr.ManifestUnknown {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func present(st *mgmtapi.ImageStatus, regionName string) bool {
	for _, r := range st.Regions {
		if r.Name == regionName {
			return r.State == "present"
		}
	}
	return false
}

// lastState describes where the image is, for a timeout message.
func lastState(ctx context.Context, ref cli.Ref, c *cli.Client) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	st, err := c.ImageStatus(ctx, ref.Repository, ref.Reference)
	if err != nil {
		return fmt.Sprintf(" (%s: %v)", c.Base, err)
	}
	var present, pending []string
	for _, r := range st.Regions {
		if r.State == "present" {
			present = append(present, r.Name)
		} else {
			pending = append(pending, r.Name)
		}
	}
	return fmt.Sprintf(" (%s: present in %s; pending in %s)", st.Digest, orNone(present), orNone(pending))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
