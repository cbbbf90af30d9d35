package main

import (
	"fmt"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/node"
)

func serveCmd() *cobra.Command {
	var (
		file             string
		listen, data, rg string
		logLevel         string
		pprofListen      string
		outboundAllow    []string
		blobCopy         string
		tlsCert, tlsKey  string
		resetRules       bool
		repl             replicationFlags
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one region node: the OCI Distribution API over local storage",
		Example: `  georeg serve --listen 127.0.0.1:5001 --data ./data --region eastus
  georeg serve --config region.yaml
  georeg serve --region brazilsouth --listen 10.0.4.1:5001 --data ./data \
    --join http://10.0.1.1:5001 --replication-secret-file secret.txt   # add a region to a registry`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spareProc()
			cfg := config.Default()
			if file != "" {
				var err error
				if cfg, err = config.Load(file); err != nil {
					return err
				}
			}
			flags := cmd.Flags()
			if flags.Changed("listen") {
				cfg.HTTP.Listen = listen
			}
			if flags.Changed("data") {
				cfg.Region.DataDir = data
			}
			if flags.Changed("region") {
				cfg.Region.Name = rg
			}
			if flags.Changed("blob-copy") {
				cfg.HTTP.BlobCopy = blobCopy
			}
			if flags.Changed("log-level") {
				cfg.Log.Level = logLevel
			}
			if flags.Changed("tls-cert") {
				cfg.HTTP.TLSCert = tlsCert
			}
			if flags.Changed("tls-key") {
				cfg.HTTP.TLSKey = tlsKey
			}
			if flags.Changed("outbound-allow") {
				cfg.Outbound.Allow = append(cfg.Outbound.Allow, outboundAllow...)
			}
			if err := repl.apply(&cfg); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("configuration:\n%w", err)
			}
			log := cfg.Log.Logger(os.Stderr)
			ctx := cmd.Context()
			if err := repl.joinRegistry(ctx, &cfg); err != nil {
				return err
			}
			n, err := node.Open(ctx, cfg, log)
			if err != nil {
				return err
			}
			if resetRules {
				if err := n.ResetNetworkRules(ctx); err != nil {
					n.Region.Close()
					return fmt.Errorf("--reset-network-rules: %w", err)
				}
				log.WarnContext(ctx, "network rules reset: default action Allow, no rules, in every region of the registry")
			}
			l, err := net.Listen("tcp", cfg.HTTP.Listen)
			if err != nil {
				n.Region.Close()
				return err
			}
			if cfg.HTTP.DataEndpoints {
				dl, err := net.Listen("tcp", cfg.HTTP.DataListen)
				if err != nil {
					l.Close()
					n.Region.Close()
					return fmt.Errorf("http.dataListen: %w", err)
				}
				n.SetDataListener(dl)
			}
			if pprofListen != "" {
				stop, err := servePprof(pprofListen, log)
				if err != nil {
					l.Close()
					n.Region.Close()
					return err
				}
				defer stop()
			}
			return n.Serve(ctx, l)
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "config", "", "YAML configuration file (flags override it)")
	f.StringVar(&listen, "listen", "127.0.0.1:5001", "address to serve on")
	f.StringVar(&data, "data", "./data", "data directory: blobs, uploads and the metadata database")
	f.StringVar(&rg, "region", "eastus", "region name")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&blobCopy, "blob-copy", "auto", "how blob GETs copy: auto (sendfile except to loopback clients), sendfile or buffered")
	f.StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	f.StringVar(&tlsKey, "tls-key", "", "the certificate's private key (PEM)")
	f.StringSliceVar(&outboundAllow, "outbound-allow", nil, "loopback or private addresses or ranges imports, webhooks and replica endpoints may reach (outbound.allow; repeatable)")
	f.StringVar(&pprofListen, "pprof-listen", "", "serve Go profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060; off when empty")
	repl.register(f)
	f.BoolVar(&resetRules, "reset-network-rules", false, "break-glass: open the registry's network rules (default action Allow, no rules) in every region, then serve")
	return cmd
}
