package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/replicate"
)

// benchSnapshotJoin measures a region joining from a snapshot (issue 25):
// r1, a `georeg serve` region, holds n manifests with a tag each in n/100
// repositories, each repository linking one shared blob, generated as
// rows in its store; r2 (another process, r1 its only peer) starts empty
// and joins. It reports r2's time to Ready, its CPU per manifest and
// r1's CPU meanwhile, against the targets (at 20k manifests: joiner <= 3
// ms CPU per manifest, the old region <= 10 % of the joiner's, Ready <=
// 60 s), and the joiner's CPU per manifest extrapolated to 1M.
func benchSnapshotJoin(ctx context.Context, bin, dir string, sizes []int) ([]row, error) {
	var rows []row
	for _, n := range sizes {
		fmt.Fprintf(os.Stderr, "  a region joins one holding %d manifests ...\n", n)
		rs, err := snapshotJoinAt(ctx, bin, filepath.Join(dir, fmt.Sprintf("snapjoin-%d", n)), n)
		if err != nil {
			return nil, err
		}
		rows = append(rows, rs...)
	}
	return rows, nil
}

func snapshotJoinAt(ctx context.Context, bin, dir string, n int) ([]row, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	names, addrs := []string{"r1", "r2"}, []string{freeAddr(), freeAddr()}
	var procs []*scaleRegion
	defer func() {
		for _, r := range procs {
			if r.p.cmd.ProcessState == nil {
				stopProcess(r.p.cmd, os.Interrupt)
			}
		}
	}()
	start1 := func() (*scaleRegion, error) {
		rs, err := startMesh(ctx, bin, dir, names, addrs, []int{0}, []int{0})
		procs = append(procs, rs...)
		if err != nil {
			return nil, err
		}
		return rs[0], waitStateReady(rs[0].base(), time.Now().Add(time.Minute))
	}
	r1, err := start1()
	if err != nil {
		return nil, err
	}
	// One real blob, which every generated repository links.
	blob := bytes.Repeat([]byte("snapshot join "), 73)
	bd := digest.FromBytes(blob)
	if err := upload(ctx, r1.p.server(), "gen/seed", bd, int64(len(blob)), bytes.NewReader(blob)); err != nil {
		return nil, err
	}
	stopProcess(r1.p.cmd, os.Interrupt)
	if err := generateJoinRows(ctx, filepath.Join(dir, "r1", "meta.db"), n, bd, int64(len(blob))); err != nil {
		return nil, err
	}
	if r1, err = start1(); err != nil {
		return nil, err
	}
	// r1's own CPU while idle (probes, stats, its summary refreshes), to
	// tell it from what serving the snapshot cost.
	idle0, idleAt := r1.p.server().cpuSeconds(), time.Now()
	time.Sleep(3 * time.Second)
	idleRate := (r1.p.server().cpuSeconds() - idle0) / time.Since(idleAt).Seconds()
	old0 := r1.p.server().cpuSeconds()
	started := time.Now()
	joined, err := startMesh(ctx, bin, dir, names, addrs, []int{1}, []int{0, 1})
	procs = append(procs, joined...)
	if err != nil {
		return nil, err
	}
	r2 := joined[0]
	if err := waitStateReady(r2.base(), started.Add(30*time.Minute)); err != nil {
		return nil, fmt.Errorf("r2: %w", err)
	}
	ready := time.Since(started)
	joinCPU := r2.p.server().cpuSeconds()
	oldCPU := r1.p.server().cpuSeconds() - old0
	oldNet := max(oldCPU-idleRate*ready.Seconds(), 0)
	var st replicate.Status
	resp, err := http.Get(r2.base() + "/_georeg/v1/status")
	if err != nil {
		return nil, err
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if st.Snapshot == nil || st.Snapshot.Manifests < n {
		return nil, fmt.Errorf("r2 did not join from a snapshot of %d manifests: %+v", n, st.Snapshot)
	}
	perManifest := joinCPU * 1000 / float64(n)
	label := fmt.Sprintf("join from a snapshot, %s manifests in %d repositories", count(n), n/100)
	return []row{
		{label + ": Ready", ready.Round(time.Millisecond).String(), "<= 60 s at 20k", distance(ready.Seconds(), 60, false)},
		{label + ": joiner CPU per manifest", fmt.Sprintf("%.3f ms (%.1f CPU-s)", perManifest, joinCPU), "<= 3 ms", distance(perManifest, 3, false)},
		{label + ": the old region's CPU", fmt.Sprintf("%.2f CPU-s, %.2f net of its idle rate (%.0f %% of the joiner's)", oldCPU, oldNet, oldNet*100/joinCPU), "<= 10 %", distance(oldNet*100/joinCPU, 10, false)},
		{label + ": 1M manifests, extrapolated", fmt.Sprintf("%.0f CPU-s for the joiner", perManifest*1000), "", "linear in manifests from this run"},
	}, nil
}

// generateJoinRows writes n manifests with a tag each, in n/100
// repositories that each link blob d, into the SQLite store at path.
func generateJoinRows(ctx context.Context, path string, n int, d digest.Digest, size int64) error {
	if err := generateRows(ctx, path, n, d, size); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	for r := range (n + 99) / 100 {
		repo := fmt.Sprintf("gen/r%d", r)
		if _, err := db.ExecContext(ctx, `INSERT INTO repositories (name, created_at) VALUES ($1, 0) ON CONFLICT DO NOTHING`, repo); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO blobs (repo, digest, size, created_at, version, origin) VALUES ($1, $2, $3, 0, 1, 'r1') ON CONFLICT DO NOTHING`, repo, d.String(), size); err != nil {
			return err
		}
	}
	return nil
}
