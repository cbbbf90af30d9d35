// Command bench measures a georeg region node on this machine and prints
// one table: each figure, its target, and the machine's physical limit
// (SHA-256 speed, durable disk writes, loopback bandwidth).
//
//	go run ./bench -georeg bin/georeg
//
// The node runs as its own process with durable (fsynced) writes, as in
// production; the load comes from this process. Both share the machine's
// two cores, so client CPU counts against every figure.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"text/tabwriter"
)

type row struct {
	name, value, target, note string
}

func main() {
	bin := flag.String("georeg", "bin/georeg", "georeg binary to measure")
	dir := flag.String("dir", "", "data directory (default: a temp dir on the disk holding the working directory)")
	quick := flag.Bool("quick", false, "smaller sizes, for checking the harness")
	logLevel := flag.String("log-level", "info", "the node's log level; info writes the production one line per request (to a file)")
	only := flag.String("only", "", "run only this part: node, pushes (small pushes alone), replication, backfill, join, readthrough, cache, frontdoor, shared (with scaling and sharedfollow), sharedpushes (its small pushes alone), sharedfollow (a shared region following a peer while it takes pushes), scaling, antientropy, snapjoin, scale or encryption")
	dist2 := flag.String("distribution2", "/usr/bin/docker-registry", "peer registry: distribution 2.8 (Debian's docker-registry)")
	dist3 := flag.String("distribution3", ".tools/bin/registry", "peer registry: distribution v3 (its cmd/registry)")
	flag.IntVar(&writeLanes, "write-lanes", 0, "shared parts: the nodes' metadata.writeLanes (0: the default)")
	flag.DurationVar(&pgRTT, "pg-rtt", 0, "shared parts: reach PostgreSQL through a simulated link (a loopback proxy) of this round trip; 1ns: the proxy's own hop, about 0.3 ms, as PostgreSQL on another host of the zone (the measured round trip is printed)")
	withPeers := flag.Bool("peers", true, "measure the peer registries beside georeg in the node part")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var peers []contender
	if *withPeers {
		peers = peerRegistries(*dist2, *dist3, *logLevel)
	}
	if err := run(ctx, *bin, *dir, *logLevel, *only, *quick, peers); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, dir, logLevel, only string, quick bool, peers []contender) error {
	if dir == "" {
		wd, _ := os.Getwd()
		d, err := os.MkdirTemp(wd, ".bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	gib := int64(1 << 30)
	if quick {
		gib = 64 << 20
	}
	var rows []row
	if only == "" || only == "node" {
		fmt.Fprintln(os.Stderr, "measuring this machine's limits ...")
		rows = append(rows, limits(filepath.Join(dir, "limits"), gib)...)
		fmt.Fprintln(os.Stderr, "measuring a region node beside peer registries ...")
		rs, err := benchNodes(ctx, bin, dir, logLevel, peers, gib)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "pushes" {
		// Small pushes alone, beside the peers, with the limit that bounds
		// them: for comparing builds on this one figure, alternated.
		rows = append(rows, limits(filepath.Join(dir, "limits"), 64<<20)...)
		rs, err := benchPushesOnly(ctx, bin, dir, logLevel, peers)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "" || only == "replication" {
		fmt.Fprintln(os.Stderr, "measuring replication lag through georeg up ...")
		rs, err := benchReplication(ctx, bin, dir, quick)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "" || only == "backfill" {
		fmt.Fprintln(os.Stderr, "measuring backfill of a new region ...")
		rs, err := benchBackfill(ctx, dir, quick)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "" || only == "join" {
		fmt.Fprintln(os.Stderr, "measuring a fourth region joining ...")
		rs, err := benchJoin(ctx, dir, quick)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "scale" {
		fmt.Fprintln(os.Stderr, "measuring replication against the number of regions ...")
		rs, err := benchScale(ctx, bin, dir, quick)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "" || only == "encryption" {
		fmt.Fprintln(os.Stderr, "measuring encryption at rest against none ...")
		rs, err := benchEncryption(ctx, bin, dir, logLevel, gib)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "snapjoin" {
		fmt.Fprintln(os.Stderr, "measuring a region joining from a snapshot ...")
		sizes := []int{20_000, 200_000}
		if quick {
			sizes = []int{20_000}
		}
		rs, err := benchSnapshotJoin(ctx, bin, dir, sizes)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "antientropy" {
		fmt.Fprintln(os.Stderr, "measuring anti-entropy rounds ...")
		sizes := []int{20_000, 1_000_000}
		if quick {
			sizes = []int{20_000}
		}
		rs, err := benchAntiEntropy(ctx, dir, sizes)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "" || only == "readthrough" {
		fmt.Fprintln(os.Stderr, "measuring read-through over a simulated link ...")
		rs, err := benchReadThrough(ctx, dir, quick)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "" || only == "cache" {
		fmt.Fprintln(os.Stderr, "measuring the artifact cache over a simulated internet link ...")
		rs, err := benchCache(ctx, dir, quick)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "" || only == "frontdoor" {
		fmt.Fprintln(os.Stderr, "measuring the front door ...")
		rs, err := benchFrontDoor(ctx, bin, dir, quick)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "shared" || only == "sharedpushes" {
		fmt.Fprintln(os.Stderr, "measuring a node on PostgreSQL and S3 ...")
		rs, err := benchShared(ctx, bin, dir, logLevel, gib, only == "sharedpushes")
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "shared" || only == "sharedfollow" {
		fmt.Fprintln(os.Stderr, "measuring a region on PostgreSQL and S3 that follows a peer while it takes pushes ...")
		rs, err := benchSharedFollow(ctx, bin, filepath.Join(dir, "sharedfollow"), logLevel)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if only == "shared" || only == "scaling" {
		fmt.Fprintln(os.Stderr, "measuring one, two and three nodes on PostgreSQL and S3 behind the front door ...")
		rs, err := benchScaling(ctx, bin, dir, logLevel)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	fmt.Printf("georeg serve / georeg up, log level %s, data on %s\n", logLevel, dir)
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tmeasured\ttarget\tnote")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.name, r.value, r.target, r.note)
	}
	return tw.Flush()
}
