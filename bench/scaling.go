package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// benchScaling runs a region of one, two and three nodes on the same
// stores (PostgreSQL and S3, fresh for each count) behind the front door,
// and measures through the door what users get: small pushes per second
// and manifest GETs per second, with each write's wait for its turn at
// the region's write lock (georeg_metadata_write_lock_wait_seconds_total
// over georeg_metadata_write_transactions_total, summed over the nodes).
// Everything, clients and door included, shares this machine's cores.
func benchScaling(ctx context.Context, bin, dir, logLevel string) ([]row, error) {
	var rows []row
	var one float64
	for n := 1; n <= 3; n++ {
		fmt.Fprintf(os.Stderr, "  %d node(s) behind the front door ...\n", n)
		m, err := measureNodes(ctx, bin, filepath.Join(dir, fmt.Sprintf("scale-%d", n)), logLevel, n)
		if err != nil {
			return nil, err
		}
		pushes := m.pushes
		r := row{fmt.Sprintf("shared stores, %d node(s) via the door: small pushes", n), fmt.Sprintf("%.0f /s", pushes), "",
			fmt.Sprintf("wait for its turn %.2f ms per write; machine CPU %.0f %% busy, the nodes' %.1f ms per push, PostgreSQL's %.2f ms per write", m.wait*1000, m.busy*100, m.nodeCPU*1000, m.pgCPU*1000)}
		if n == 1 {
			one = pushes
		} else {
			r.note += fmt.Sprintf("; %.2fx one node", pushes/one)
			if n == 2 {
				r.target, r.note = ">= 1.5x one node", r.note+"; "+distance(pushes/one, 1.5, true)
			}
		}
		rows = append(rows, r, row{fmt.Sprintf("shared stores, %d node(s) via the door: manifest GET, 16 clients", n), fmt.Sprintf("%.0f /s", m.gets), "", ""})
	}
	return rows, nil
}

// nodesFigures are what measureNodes measures of n nodes behind a door.
type nodesFigures struct {
	pushes  float64 // small pushes per second (100 concurrent, median of 3 rounds)
	gets    float64 // manifest GETs per second at 16 clients
	wait    float64 // each write's wait for its turn, seconds
	busy    float64 // the machine's CPU busy during the pushes, of its cores
	nodeCPU float64 // the nodes' CPU seconds per push
	pgCPU   float64 // PostgreSQL's CPU seconds per write
}

// measureNodes starts n nodes and a door, and measures them.
func measureNodes(ctx context.Context, bin, dir, logLevel string, n int) (m nodesFigures, err error) {
	stores, err := newSharedStores(ctx)
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(dir)
	var nodes []*server
	defer func() {
		for _, s := range nodes {
			s.stop()
		}
	}()
	for i := range n {
		s, err := startSharedNode(ctx, bin, filepath.Join(dir, fmt.Sprintf("node-%d", i+1)), logLevel, stores, fmt.Sprintf("bench-%d", i+1))
		if err != nil {
			return m, err
		}
		nodes = append(nodes, s)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "regions:\n  - name: bench\n    endpoint: %s\n    nodes:\n", nodes[0].base)
	for _, s := range nodes {
		fmt.Fprintf(&cfg, "      - %s\n", s.base)
	}
	cfg.WriteString("locations:\n  - {cidr: 127.0.0.1/32, region: bench}\nprobeInterval: 500ms\n")
	file := filepath.Join(dir, "route.yaml")
	if err := os.WriteFile(file, []byte(cfg.String()), 0o644); err != nil {
		return m, err
	}
	addr := freeAddr()
	door, err := startProc(ctx, bin, filepath.Join(dir, "route.log"), addr, "route", "--config", file, "--listen", addr, "--log-level", "warn")
	if err != nil {
		return m, err
	}
	defer stopProcess(door.cmd, syscall.SIGTERM)
	via := door.server()

	tx0, wait0 := writeStats(nodes)
	busy0, total0 := machineCPU()
	cpu0, pg0 := nodesCPU(nodes), commandCPU("postgres")
	wall, err := smallPushes(ctx, via, "bench/scale", 50_000)
	if err != nil {
		return m, err
	}
	busy1, total1 := machineCPU()
	m.nodeCPU = (nodesCPU(nodes) - cpu0) / 300 // three rounds of 100
	if total1 > total0 {
		m.busy = (busy1 - busy0) / (total1 - total0)
	}
	pg1 := commandCPU("postgres")
	tx1, wait1 := writeStats(nodes)
	if tx1 > tx0 {
		m.wait = (wait1 - wait0) / (tx1 - tx0)
		m.pgCPU = (pg1 - pg0) / (tx1 - tx0)
	}
	m.pushes = 100 / wall
	if err := pushImage(ctx, via, "bench/small", "v1", 0); err != nil {
		return m, err
	}
	m.gets, err = manifestGets(ctx, via, 16, 5*time.Second)
	return m, err
}

// nodesCPU sums the nodes' CPU seconds so far.
func nodesCPU(nodes []*server) float64 {
	var s float64
	for _, n := range nodes {
		s += n.cpuSeconds()
	}
	return s
}

// writeStats sums the nodes' write transactions and lock wait (seconds)
// from their /metrics.
func writeStats(nodes []*server) (tx, wait float64) {
	for _, s := range nodes {
		tx += metricSum(s.base, "georeg_metadata_write_transactions_total", "")
		wait += metricSum(s.base, "georeg_metadata_write_lock_wait_seconds_total", "")
	}
	return tx, wait
}
