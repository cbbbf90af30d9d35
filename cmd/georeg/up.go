package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/up"
)

// upCmd starts a whole registry on this machine: three regions that
// replicate with each other, and the front door on 127.0.0.1:5000.
func upCmd() *cobra.Command {
	var data, logLevel, linksControl string
	var noDistance, tls, withAuth, resetRules, encrypt bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a whole registry on this machine: three regions that replicate with each other",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spareProc()
			lc := config.Log{Level: logLevel, Format: "text"}
			if _, err := lc.SlogLevel(); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			ctx := cmd.Context()
			// With auth, regions talk over TLS (docs/security.md): --auth
			// implies --tls.
			tls = tls || withAuth
			cfg := up.Config{DataDir: data, Regions: up.DefaultRegions(), FrontDoor: "127.0.0.1:5000", TLS: tls, Auth: withAuth, Encrypt: encrypt}
			if !noDistance {
				cfg.Distance = up.DefaultDistance
			}
			started := time.Now()
			reg, err := up.Start(ctx, cfg, lc.Logger(os.Stderr))
			if err != nil {
				return err
			}
			if resetRules {
				if err := reg.Regions[0].Node.ResetNetworkRules(ctx); err != nil {
					return fmt.Errorf("--reset-network-rules: %w", err)
				}
				fmt.Println("Network rules reset: default action Allow, no rules, in every region.")
			}
			fmt.Printf("georeg is up: one registry, three regions (data in %s)\n", data)
			fmt.Printf("  %-14s %s   (clients from 127.0.0.1 go to eastus, .2 westeurope, .3 southeastasia)\n", "front door", reg.FrontDoor)
			for _, r := range reg.Regions {
				fmt.Printf("  %-14s %s   (pinned to this region)\n", r.Name, r.URL)
			}
			fmt.Printf("The replication secret (for a region added with `georeg replication create`) is in %s.\n", up.SecretFile(data))
			if tls {
				fmt.Printf("TLS: every endpoint serves HTTPS with a certificate of the local CA %s\n", reg.TLS.CA)
				fmt.Printf("  trust it with SSL_CERT_FILE=%s (crane, regctl, skopeo, georeg) or your system's store.\n", reg.TLS.CA)
			}
			if encrypt {
				fmt.Printf("Encryption at rest: every region's blobs are encrypted under its own key file, %s (keep it apart from the data in production, or use a KMS plugin: docs/security.md)\n", up.KeyFile(data, "<region>"))
			}
			if withAuth {
				password, err := up.LoadAdminPassword(data)
				if err != nil {
					return err
				}
				fmt.Printf("Auth is on. Admin credentials: user admin, password %s (kept in %s)\n", password, up.AdminPasswordFile(data))
				fmt.Printf("  georeg login %s -u admin --password-stdin < %s\n", reg.FrontDoor, up.AdminPasswordFile(data))
			}
			if noDistance {
				fmt.Println("Replication runs over plain loopback (--no-distance).")
			} else {
				fmt.Println("Replication between regions runs over simulated links (--no-distance turns them off):")
				for i, a := range reg.Regions {
					for _, b := range reg.Regions[i+1:] {
						if l, ok := up.DefaultDistance(a.Name, b.Name); ok {
							fmt.Printf("  %s <-> %s: %s one way, %d MB/s\n", a.Name, b.Name, l.Latency, l.Bandwidth/1_000_000)
						}
					}
				}
			}
			if !noDistance && linksControl != "" {
				stop, err := serveLinks(reg, linksControl)
				if err != nil {
					return err
				}
				defer stop()
				fmt.Printf("Inject faults on them: georeg link set westeurope partition (then: healthy); links control on %s\n", linksControl)
			}
			fmt.Print(`Push through the front door, pull from a region (crane: go install github.com/google/go-containerregistry/cmd/crane@latest):
  tar -cf layer.tar README.md && crane append --insecure -f layer.tar -t 127.0.0.1:5000/demo/app:v1
  crane manifest --insecure 127.0.0.1:5002/demo/app:v1
Ctrl-C stops it.
`)
			go reg.AwaitReady(ctx, func(name string) {
				fmt.Printf("  %s is Ready (%.1f s after start)\n", name, time.Since(started).Seconds())
			})
			return reg.Wait()
		},
	}
	cmd.Flags().StringVar(&data, "data", "./georeg-data", "data directory of the whole registry (one folder per region)")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	cmd.Flags().BoolVar(&noDistance, "no-distance", false, "replicate over plain loopback, without simulated latency and bandwidth")
	cmd.Flags().BoolVar(&tls, "tls", false, "serve HTTPS everywhere with a certificate from a local CA (made under --data/tls)")
	cmd.Flags().BoolVar(&withAuth, "auth", false, "turn auth on and print the admin credentials (implies --tls: regions talk over TLS)")
	cmd.Flags().BoolVar(&encrypt, "encrypt", false, "encrypt every region's blobs at rest, each under a key file made under --data/keys")
	cmd.Flags().BoolVar(&resetRules, "reset-network-rules", false, "break-glass: open the registry's network rules (default action Allow, no rules)")
	cmd.Flags().StringVar(&linksControl, "links-control", defaultLinksControl, "where georeg link reaches the simulated links (loopback; empty: off)")
	return cmd
}

// serveLinks serves the links control (georeg link) on addr, a loopback
// address, until stop.
func serveLinks(reg *up.Registry, addr string) (stop func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--links-control %s: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--links-control %s: the links control listens on a loopback address only", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("links control: listen on %s (is another georeg running?): %w", addr, err)
	}
	srv := &http.Server{Handler: reg.LinksHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }, nil
}
