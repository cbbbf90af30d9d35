package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/tlsconf"
)

// replicationFlags are serve's flags for a region's place in a registry,
// so one command adds a region: georeg serve --region NAME --join URL
// --replication-secret-file F.
type replicationFlags struct {
	join       string
	secretFile string
	endpoint   string
	peers      []string // NAME=URL
	caFile     string
}

func (f *replicationFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.join, "join", "", "join the registry that serves at this URL (any of its regions): register this region there and backfill from it")
	fs.StringVar(&f.secretFile, "replication-secret-file", "", "file holding the registry's replication secret (replication.secret)")
	fs.StringVar(&f.endpoint, "endpoint", "", "base URL other regions reach this region at (replication.endpoint; default http(s)://LISTEN)")
	fs.StringArrayVar(&f.peers, "peer", nil, "a peer region, NAME=URL, nearest first (replication.peers); repeatable")
	fs.StringVar(&f.caFile, "replication-ca-file", "", "PEM CA trusted for peers served over TLS (replication.caFile)")
}

// apply sets the configuration fields the flags give.
func (f *replicationFlags) apply(cfg *config.Config) error {
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return fmt.Errorf("--replication-secret-file: %w", err)
		}
		cfg.Replication.Secret = strings.TrimSpace(string(b))
	}
	if f.endpoint != "" {
		cfg.Replication.Endpoint = f.endpoint
	}
	if f.caFile != "" {
		cfg.Replication.CAFile = f.caFile
	}
	for _, p := range f.peers {
		name, url, ok := strings.Cut(p, "=")
		if !ok || name == "" || url == "" {
			return fmt.Errorf("--peer %q: give NAME=URL, e.g. eastus=http://10.0.0.1:5001", p)
		}
		cfg.Replication.Peers = append(cfg.Replication.Peers, replicate.Peer{Name: name, Endpoint: url})
	}
	if f.join != "" && cfg.Replication.Secret == "" {
		return fmt.Errorf("--join needs the registry's replication secret: --replication-secret-file F (or replication.secret)")
	}
	return nil
}

// joinRegistry registers this region with the registry at --join and
// adds the registry's members as its peers (the region that answered
// first), unless configured already.
func (f *replicationFlags) joinRegistry(ctx context.Context, cfg *config.Config) error {
	if f.join == "" {
		return nil
	}
	tc, err := tlsconf.Client(cfg.Replication.CAFile)
	if err != nil {
		return fmt.Errorf("replication.caFile: %w", err)
	}
	endpoint := cfg.Replication.Endpoint
	if endpoint == "" {
		scheme := "http://"
		if cfg.HTTP.TLSCert != "" {
			scheme = "https://"
		}
		endpoint = scheme + cfg.HTTP.Listen
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	signer := peerauth.NewSigner(peerauth.FromSecret(cfg.Replication.Secret), cfg.Region.Name, client)
	members, err := replicate.Join(ctx, client, f.join, signer, cfg.Region.Name, endpoint, 30*time.Second)
	if err != nil {
		return err
	}
	var peers []replicate.Peer
	for _, m := range members {
		if !slices.ContainsFunc(cfg.Replication.Peers, func(p replicate.Peer) bool { return p.Name == m.Name }) {
			peers = append(peers, m)
		}
	}
	cfg.Replication.Peers = append(peers, cfg.Replication.Peers...)
	return nil
}
