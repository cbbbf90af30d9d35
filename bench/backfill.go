package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/node"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// benchBackfill measures a new region backfilling n images of 1 MiB from
// a region it reaches over a simulated link (40 ms one way, 100 MB/s):
// blob bytes over the time from its start to Ready, against the link's
// bandwidth. The regions run in this process (the link is the in-process
// shaping proxy `georeg up` uses).
func benchBackfill(ctx context.Context, dir string, quick bool) ([]row, error) {
	n, size := 1000, int64(1<<20)
	if quick {
		n = 50
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	src, err := up.Start(ctx, up.Config{DataDir: filepath.Join(dir, "backfill-src"), Secret: "bench",
		Regions: []up.RegionSpec{{Name: "eastus", Listen: "127.0.0.1:0"}}}, discard)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); _ = src.Wait() }()
	east := &server{base: src.ByName["eastus"].URL}
	fmt.Fprintf(os.Stderr, "pushing %d images of %s ...\n", n, sizeLabel(size))
	for i := range n {
		block := seededBlock(500_000 + i)
		layer := digestOf(block, size)
		cfg := []byte(fmt.Sprintf(`{"backfill":%d}`, i))
		if err := upload(ctx, east, "bench/backfill", layer, size, newRepeat(block, size)); err != nil {
			return nil, err
		}
		if err := upload(ctx, east, "bench/backfill", digest.FromBytes(cfg), int64(len(cfg)), bytes.NewReader(cfg)); err != nil {
			return nil, err
		}
		m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
			digest.FromBytes(cfg), len(cfg), layer, size)
		req, _ := http.NewRequestWithContext(ctx, "PUT", east.base+"/v2/bench/backfill/manifests/i"+fmt.Sprint(i), strings.NewReader(m))
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		if err := expectCreated(req); err != nil {
			return nil, err
		}
	}

	shape := link.Shape{Latency: 40 * time.Millisecond, Bandwidth: 100_000_000}
	proxy, err := link.Start(ctx, strings.TrimPrefix(east.base, "http://"), shape)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); proxy.Wait() }()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := config.Default()
	c.Region.Name, c.Region.DataDir = "brazilsouth", filepath.Join(dir, "backfill-new")
	c.HTTP.Listen = l.Addr().String()
	c.Replication.Secret = "bench"
	c.Replication.Peers = []replicate.Peer{{Name: "eastus", Endpoint: "http://" + proxy.Addr()}}
	nd, err := node.Open(ctx, c, discard)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	served := make(chan error, 1)
	go func() { served <- nd.Serve(ctx, l) }()
	defer func() { cancel(); <-served }()

	fmt.Fprintln(os.Stderr, "backfilling a new region over the simulated link ...")
	var st replicate.Status
	deadline := start.Add(30 * time.Minute)
	for {
		resp, err := http.Get("http://" + l.Addr().String() + "/_georeg/v1/status")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && st.State == replicate.StateReady && st.Progress.ObjectsTotal > 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("backfill not Ready after 30 min: %+v %v", st.Progress, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	rate := float64(st.Progress.BytesTotal) / elapsed.Seconds()
	pct := 100 * rate / float64(shape.Bandwidth)
	return []row{{
		name:   fmt.Sprintf("backfill %d images x %s into a new region, %s RTT %d MB/s link", n, sizeLabel(size), shape.RTT(), shape.Bandwidth/1_000_000),
		value:  fmt.Sprintf("%.1f MB/s (%s in %s)", rate/1e6, mib64(st.Progress.BytesTotal), elapsed.Round(time.Millisecond)),
		target: ">= 80% of the link",
		note:   fmt.Sprintf("%.0f%% of the link: %s", pct, distance(pct, 80, true)),
	}}, nil
}

func mib64(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }
