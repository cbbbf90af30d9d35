package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/hlc"
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
	if r.Registry != "" && registry == cli.Registry() {
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
	status.Flags().StringVarP(&registry, "registry", "r", cli.Registry(), "registry (or region) to ask")
	status.Flags().StringVarP(&output, "output", "o", "table", cli.OutputHelp)
	cmd.AddCommand(status)
	return cmd
}

func printStatus(st *mgmtapi.ImageStatus, output string) error {
	if !custom(output) {
		return show(output, st, "", nil)
	}
	switch output {
	case "tsv":
		for _, r := range st.Regions {
			fmt.Printf("%s\t%s\t%s\t%s\n", r.Name, r.State, since(r), detail(r))
		}
		return nil
	case "table":
		what := st.Digest
		if st.Deleted {
			what = "deleted at version " + st.DeletedVersion
			if st.RestorableUntil != nil {
				what += " (restorable until " + st.RestorableUntil.UTC().Format(time.RFC3339) + ")"
			}
		}
		fmt.Printf("%s%s  %s  (as %s knows it)\n", st.Repository, refSep(st.Reference), what, st.Region)
		if st.OnDemand {
			fmt.Println("cached on demand: a region's layers are fetched there when first pulled")
		}
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REGION\tSTATE\tSINCE\tDETAIL")
		for _, r := range st.Regions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.State, since(r), detail(r))
		}
		return tw.Flush()
	}
	return nil
}

// refSep writes a reference after its repository: :tag or @digest.
func refSep(ref string) string {
	if strings.Contains(ref, ":") {
		return "@" + ref
	}
	return ":" + ref
}

// detail is a region's delete version, or why it could not be asked.
func detail(r mgmtapi.RegionState) string {
	if r.Version != "" {
		return "version " + r.Version
	}
	return r.Error
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
	var deleted bool
	cmd := &cobra.Command{
		Use:   "wait REF --region R [--deleted]",
		Short: "Wait until an image is pullable, complete, in a region (or, with --deleted, gone from it)",
		Long: `wait resolves REF where the registry (or the region named in REF) knows it,
then waits until region R holds that exact manifest complete, and its tag
points at it. It exits 0 then, and 1 with a clear message on timeout.

With --deleted it waits until the delete of REF (a tag, a manifest by
digest, or a blob by digest) the registry knows has reached region R: R
then answers 404 for it.`,
		Example: `  georeg wait demo/app:v1 --region westeurope --timeout 60s
  georeg wait demo/app:v1 --region southeastasia --deleted`,
		Args: cobra.ExactArgs(1),
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
			name := ref.Repository + refSep(ref.Reference)
			if deleted {
				err = waitDeleted(ctx, ref, c, regionName)
				if errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("timed out after %s: %s is not deleted in %s yet%s", timeout, name, regionName, lastState(cmd.Context(), ref, c, regionName))
				}
				if err == nil {
					fmt.Printf("%s is deleted in %s\n", name, regionName)
				}
				return err
			}
			err = waitFor(ctx, ref, c, regionName)
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("timed out after %s: %s is not pullable in %s yet%s",
					timeout, name, regionName, lastState(cmd.Context(), ref, c, regionName))
			}
			if err == nil {
				fmt.Printf("%s is pullable in %s\n", name, regionName)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&registry, "registry", "r", cli.Registry(), "registry (or region) that knows REF")
	cmd.Flags().StringVar(&regionName, "region", "", "region to wait for")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait")
	cmd.Flags().BoolVar(&deleted, "deleted", false, "wait until REF is deleted in the region")
	return cmd
}

// regionClient returns a client for region name of the registry c reaches.
func regionClient(ctx context.Context, c *cli.Client, name string) (*cli.Client, error) {
	regions, err := c.Regions(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range regions.Regions {
		names = append(names, r.Name)
		if r.Name == name {
			return &cli.Client{Base: r.Endpoint, HTTP: c.HTTP, User: c.User, Password: c.Password}, nil
		}
	}
	return nil, fmt.Errorf("region %q is not in this registry; its regions are %s", name, strings.Join(names, ", "))
}

// waitDeleted polls until region holds the delete of ref that c knows
// (that version, or a later one).
func waitDeleted(ctx context.Context, ref cli.Ref, c *cli.Client, regionName string) error {
	var rc *cli.Client
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if rc == nil {
			var err error
			if rc, err = regionClient(ctx, c, regionName); err != nil && strings.Contains(err.Error(), "is not in this registry") {
				return err
			}
		}
		if rc != nil {
			want, err := c.ImageStatus(ctx, ref.Repository, ref.Reference)
			if err == nil && want.Deleted {
				got, err := rc.LocalImageStatus(ctx, ref.Repository, ref.Reference)
				if err == nil && got.Deleted && !versionLess(got.DeletedVersion, want.DeletedVersion) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// versionLess compares two versions as the registry orders them.
func versionLess(a, b string) bool {
	va, err1 := hlc.ParseVersion(a)
	vb, err2 := hlc.ParseVersion(b)
	return err1 != nil || err2 != nil || va.Less(vb)
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
func lastState(ctx context.Context, ref cli.Ref, c *cli.Client, regionName string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	st, err := c.ImageStatus(ctx, ref.Repository, ref.Reference)
	if err != nil {
		return fmt.Sprintf(" (%s: %v)", c.Base, err)
	}
	if rc, err := regionClient(ctx, c, regionName); err == nil {
		if own, err := rc.ImageStatus(ctx, ref.Repository, ref.Reference); err == nil {
			st = withOwnState(st, own, regionName)
		}
	}
	by := map[string][]string{}
	for _, r := range st.Regions {
		by[r.State] = append(by[r.State], r.Name)
	}
	what := st.Digest
	if st.Deleted {
		what = "deleted at version " + st.DeletedVersion
		return fmt.Sprintf(" (%s: deleted in %s; present in %s; pending in %s)", what, orNone(by["deleted"]), orNone(by["present"]), orNone(append(by["pending"], by["unknown"]...)))
	}
	return fmt.Sprintf(" (%s: present in %s; pending in %s)", what, orNone(by["present"]), orNone(by["pending"]))
}

// withOwnState is st (one region's view of every region, from what it
// heard) with region's entry as region itself answered it (own), when
// both describe the same manifest or the same delete: the region waited
// for is told as it is, not as another region last heard, so the
// message never says pending where wait just found the image present.
func withOwnState(st, own *mgmtapi.ImageStatus, region string) *mgmtapi.ImageStatus {
	if own.Digest != st.Digest || own.Deleted != st.Deleted || own.DeletedVersion != st.DeletedVersion {
		return st
	}
	i := slices.IndexFunc(st.Regions, func(r mgmtapi.RegionState) bool { return r.Name == region })
	j := slices.IndexFunc(own.Regions, func(r mgmtapi.RegionState) bool { return r.Name == region })
	if i < 0 || j < 0 {
		return st
	}
	out := *st
	out.Regions = slices.Clone(st.Regions)
	out.Regions[i] = own.Regions[j]
	return &out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
