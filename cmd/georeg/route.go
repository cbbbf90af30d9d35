package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/route"
)

// routeCmd runs the front door on its own.
func routeCmd() *cobra.Command {
	var file, listen, logLevel, dnsListen, dnsName, tlsCert, tlsKey string
	cmd := &cobra.Command{
		Use:   "route --config route.yaml",
		Short: "Run the front door: one registry name, each client sent to its closest healthy region",
		Long: `The configuration names the regions, the client locations and the
fallbacks (see internal/route):

  regions:
    - {name: eastus, endpoint: "http://127.0.0.1:5001"}
    - {name: westeurope, endpoint: "http://127.0.0.1:5002"}
  locations:
    - {cidr: 127.0.0.1/32, region: eastus}
    - {cidr: 127.0.0.2/32, region: westeurope}
  fallback:
    westeurope: [eastus]
  probeInterval: 1s
  probeKey: 5c1e…       # when regions have auth on: georeg replication probe-key prints it
  caFile: ca.pem        # trust for regions served over TLS`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("--config is required")
			}
			if (tlsCert == "") != (tlsKey == "") {
				return errors.New("--tls-cert and --tls-key: give both or neither")
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			var rc route.Config
			dec := yaml.NewDecoder(bytes.NewReader(data))
			dec.KnownFields(true)
			if err := dec.Decode(&rc); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			lc := config.Log{Level: logLevel, Format: "text"}
			if _, err := lc.SlogLevel(); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := lc.Logger(os.Stderr)
			router, err := route.New(rc, log)
			if err != nil {
				return fmt.Errorf("%s:\n%w", file, err)
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			srv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			probes := make(chan error, 1)
			go func() { probes <- router.Run(ctx) }()
			if dnsListen != "" {
				conn, err := net.ListenPacket("udp", dnsListen)
				if err != nil {
					return fmt.Errorf("--dns-listen: %w", err)
				}
				dnsDone := make(chan error, 1)
				go func() { dnsDone <- route.NewDNS(router, dnsName).Serve(ctx, conn) }()
				defer func() { <-dnsDone }()
				log.Info("DNS mode serving", "addr", conn.LocalAddr().String(), "name", dnsName)
			}
			log.Info("front door serving", "addr", l.Addr().String())
			serve := func() error { return srv.Serve(l) }
			if tlsCert != "" {
				serve = func() error { return srv.ServeTLS(l, tlsCert, tlsKey) }
			}
			if err := serve(); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return <-probes
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "YAML: regions, locations, fallback, probeInterval")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:5000", "address to serve on")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&dnsListen, "dns-listen", "", "also answer DNS (UDP) on this address, e.g. 127.0.0.1:5353")
	cmd.Flags().StringVar(&dnsName, "dns-name", "registry.local", "the registry name the DNS mode answers for")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	cmd.Flags().StringVar(&tlsKey, "tls-key", "", "the certificate's private key (PEM)")
	return cmd
}
