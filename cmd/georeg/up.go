package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/node"
	"github.com/georeg/georeg/internal/region"
)

// upCmd starts the registry on this machine. Until replication lands it
// runs one region, eastus, on 127.0.0.1:5001 and also on :5000 (where the
// front door will be).
func upCmd() *cobra.Command {
	var data, logLevel string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a whole registry on this machine (today: one region, eastus)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lc := config.Log{Level: logLevel, Format: "text"}
			if _, err := lc.SlogLevel(); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := lc.Logger(os.Stderr)
			ctx := cmd.Context()
			n, err := node.Open(ctx, config.Config{Region: region.Config{Name: "eastus", DataDir: filepath.Join(data, "eastus")}}, log)
			if err != nil {
				return err
			}
			var ls []net.Listener
			for _, addr := range []string{"127.0.0.1:5001", "127.0.0.1:5000"} {
				l, err := net.Listen("tcp", addr)
				if err != nil {
					for _, l := range ls {
						l.Close()
					}
					n.Region.Close()
					return fmt.Errorf("listen on %s (is another georeg running?): %w", addr, err)
				}
				ls = append(ls, l)
			}
			fmt.Printf(`georeg is up (data in %s)
  eastus   http://127.0.0.1:5001   (also on 127.0.0.1:5000)
One region for now; replication between regions comes with the next release.
Try (crane: go install github.com/google/go-containerregistry/cmd/crane@latest):
  tar -cf layer.tar README.md && crane append --insecure -f layer.tar -t 127.0.0.1:5000/demo/app:v1
  crane manifest --insecure 127.0.0.1:5001/demo/app:v1
Ctrl-C stops it.
`, data)
			return n.Serve(ctx, ls...)
		},
	}
	cmd.Flags().StringVar(&data, "data", "./georeg-data", "data directory of the whole registry")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}
