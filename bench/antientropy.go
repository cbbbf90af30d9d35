package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// benchAntiEntropy measures anti-entropy rounds between two regions
// (georeg up's, in this process) that hold the same n manifests, each
// with a tag, in n/100 repositories: rows generated directly in both
// stores, identical. It reports the CPU of westeurope's rounds against
// eastus (both sides: they run in this process): the first (every
// summary computed), rounds with no difference, and a round after one
// tag changed in eastus behind the feed's back. Targets (issue 25): a
// round with no differences <= 0.05 CPU-s at 20k manifests, <= 1 CPU-s at
// 1M.
func benchAntiEntropy(ctx context.Context, dir string, sizes []int) ([]row, error) {
	var rows []row
	for _, n := range sizes {
		rs, err := antiEntropyAt(ctx, filepath.Join(dir, fmt.Sprintf("ae-%d", n)), n)
		if err != nil {
			return nil, err
		}
		rows = append(rows, rs...)
	}
	return rows, nil
}

func antiEntropyAt(ctx context.Context, dir string, n int) ([]row, error) {
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	regions := []up.RegionSpec{{Name: "eastus", Listen: "127.0.0.1:0"}, {Name: "westeurope", Listen: "127.0.0.1:0"}}
	reg, err := up.Start(ctx, up.Config{DataDir: dir, Secret: "bench", Regions: regions, AntiEntropyInterval: 24 * time.Hour}, discard)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); _ = reg.Wait() }()
	fmt.Fprintf(os.Stderr, "  generating %d manifests and tags in two regions ...\n", n)
	for _, name := range []string{"eastus", "westeurope"} {
		if err := generateRows(ctx, filepath.Join(dir, name, "meta.db"), n, digest.FromString("layer"), 5); err != nil {
			return nil, err
		}
	}
	rep := reg.ByName["westeurope"].Node.Replicator()
	round := func() (replicate.Round, float64, error) {
		c0 := processCPU()
		r, err := rep.AntiEntropyRound(ctx, "eastus")
		return r, processCPU() - c0, err
	}
	label := fmt.Sprintf("anti-entropy, %s manifests in %d repositories", count(n), n/100)
	first, cpu, err := round()
	if err != nil {
		return nil, err
	}
	out := []row{{label + ": first round (every summary computed)", fmt.Sprintf("%.3f CPU-s", cpu), "", fmt.Sprintf("%d repositories differed", len(first.Repos))}}
	var worst float64
	for range 5 {
		r, cpu, err := round()
		if err != nil {
			return nil, err
		}
		if len(r.Repos) != 0 {
			return nil, fmt.Errorf("a round between equal regions found %v differing", r.Repos)
		}
		worst = max(worst, cpu)
	}
	target := 0.05 * float64(n) / 20_000
	if n > 20_000 {
		target = 1.0 * float64(n) / 1_000_000
	}
	out = append(out, row{label + ": round with no differences (worst of 5, both sides)", fmt.Sprintf("%.3f CPU-s", worst),
		fmt.Sprintf("<= %.2f CPU-s", target), distance(worst, target, false)})

	// One tag moved in eastus behind the feed (its generation moved, as a
	// write through georeg does).
	east, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "eastus", "meta.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	defer east.Close()
	if _, err := east.ExecContext(ctx, `UPDATE tags SET version = version + 1 WHERE repo = 'gen/r0' AND name = 't0'`); err != nil {
		return nil, err
	}
	if _, err := east.ExecContext(ctx, `UPDATE repo_gens SET gen = gen + 1 WHERE repo = 'gen/r0'`); err != nil {
		return nil, err
	}
	r, cpu, err := round()
	if err != nil {
		return nil, err
	}
	out = append(out, row{label + ": round after one tag moved", fmt.Sprintf("%.3f CPU-s", cpu), "",
		fmt.Sprintf("%d repository differed, %d applied", len(r.Repos), r.Applied)})
	return out, nil
}

// generateRows writes n manifests with one tag each, 100 per repository,
// into the SQLite store at path, as identical rows in every store (fixed
// versions and times), and moves their repositories' generations.
func generateRows(ctx context.Context, path string, n int, layer digest.Digest, size int64) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	m, err := tx.PrepareContext(ctx, `INSERT INTO manifests (repo, digest, media_type, size, payload, created_at, version, origin, deleted)
		VALUES ($1, $2, 'application/vnd.oci.image.manifest.v1+json', $4, $5, 0, $3, 'eastus', 0)`)
	if err != nil {
		return err
	}
	tg, err := tx.PrepareContext(ctx, `INSERT INTO tags (repo, name, digest, version, origin, updated_at, deleted) VALUES ($1, $2, $3, $4, 'eastus', 0, 0)`)
	if err != nil {
		return err
	}
	for i := range n {
		repo := fmt.Sprintf("gen/r%d", i/100)
		payload := generatedManifest(i, layer, size)
		d := digest.FromBytes(payload).String()
		v := int64(1)<<40 + int64(i)
		if _, err := m.ExecContext(ctx, repo, d, v, len(payload), payload); err != nil {
			return err
		}
		if _, err := tg.ExecContext(ctx, repo, fmt.Sprint("t", i%100), d, v); err != nil {
			return err
		}
		if i%100 == 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO repo_gens (repo, gen) VALUES ($1, 1)
				ON CONFLICT (repo) DO UPDATE SET gen = repo_gens.gen + 1`, repo); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// generatedManifest is manifest i of generateRows: an image manifest as
// a client pushes it (about 500 bytes; config and one layer, both blob
// layer of size bytes, and annotations that make it unique), stored as
// bytes like every manifest georeg stores.
func generatedManifest(i int, layer digest.Digest, size int64) []byte {
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%[2]s","size":%[3]d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%[2]s","size":%[3]d}],`+
		`"annotations":{"org.opencontainers.image.created":"2026-12-01T00:00:00Z","org.opencontainers.image.revision":"%040[1]x","org.opencontainers.image.title":"generated %[1]d"}}`,
		i, layer, size)
}

// processCPU is this process's user and system CPU so far, in seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func count(n int) string {
	if n >= 1_000_000 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return fmt.Sprintf("%dk", n/1000)
}
