package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// A contender is a registry measured by the node part: georeg and the
// peer registries it is compared with in the same run, on the same disk
// and cores, by the same client. Ratios in one run are what count: the
// absolute figures on these shared machines swing by ±40 % between runs.
type contender struct {
	name  string
	start func(ctx context.Context, data string) (*server, error)
}

// peerRegistries are the peers: Debian's docker-registry package
// (distribution 2.8) and distribution v3, each with filesystem storage.
// Neither fsyncs what it stores; georeg fsyncs every blob and manifest
// before acknowledging it (docs/performance.md).
func peerRegistries(dist2, dist3, logLevel string) []contender {
	return []contender{
		{"distribution 2.8", func(ctx context.Context, data string) (*server, error) {
			return startDistribution(ctx, dist2, data, logLevel)
		}},
		{"distribution 3", func(ctx context.Context, data string) (*server, error) {
			return startDistribution(ctx, dist3, data, logLevel)
		}},
	}
}

// startDistribution runs a distribution registry (`BIN serve CONFIG`) on
// loopback with filesystem storage under data and the in-memory blob
// descriptor cache its sample configuration sets.
func startDistribution(ctx context.Context, bin, data, logLevel string) (*server, error) {
	if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("peer registry %s: %w (make bench installs it)", bin, err)
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	addr := freeAddr()
	level := logLevel
	if level == "warn" {
		level = "warning"
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: %s
storage:
  filesystem: {rootdirectory: %s}
  cache: {blobdescriptor: inmemory}
  delete: {enabled: true}
http:
  addr: %s
`, level, data, addr)
	file := data + ".yml"
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "serve", file)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	if err := launch(cmd, data+".log", "http://"+addr+"/v2/", 20*time.Second); err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	return &server{cmd: cmd, addr: addr, base: "http://" + addr, twoStep: true}, nil
}

// A step measures one or more figures of a running server; size is the
// large blob's size (1 GiB, or less with -quick).
type step func(ctx context.Context, s *server, size int64) ([]figure, error)

// nodeSteps are the node part's measurements, in order (the downloads
// read what the uploads before them stored); small pushes follow them,
// interleaved between the contenders (interleavedPushes).
var nodeSteps = []step{
	benchUpload, benchDownload, benchParallelUploads, benchParallelDownloads, benchManifestGets,
}

// measure starts c on a fresh directory, runs steps against it and stops
// it, removing what it stored.
func measure(ctx context.Context, c contender, data string, size int64, steps []step) ([]figure, error) {
	fmt.Fprintf(os.Stderr, "  %s ...\n", c.name)
	s, err := c.start(ctx, data)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(data)
	defer s.stop()
	var figs []figure
	for _, step := range steps {
		fs, err := step(ctx, s, size)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		figs = append(figs, fs...)
	}
	return figs, nil
}

// benchPushesOnly measures small pushes alone, georeg beside each peer.
func benchPushesOnly(ctx context.Context, bin, dir, logLevel string, peers []contender) ([]row, error) {
	return benchContenders(ctx, bin, dir, logLevel, peers, 0, nil)
}

// benchNodes measures georeg and each peer with the node steps and
// returns the side-by-side table: each figure for every contender, the
// ratio of georeg's to the best peer's, and the target.
func benchNodes(ctx context.Context, bin, dir, logLevel string, peers []contender, size int64) ([]row, error) {
	return benchContenders(ctx, bin, dir, logLevel, peers, size, nodeSteps)
}

// benchContenders runs steps against georeg and each peer, one after the
// other, then small pushes against all of them interleaved, and lays the
// figures side by side.
func benchContenders(ctx context.Context, bin, dir, logLevel string, peers []contender, size int64, steps []step) ([]row, error) {
	georeg := contender{"georeg", func(ctx context.Context, data string) (*server, error) {
		s, err := startServer(ctx, bin, data, logLevel)
		if s != nil {
			s.twoStep = true // the same upload requests as the peers get
		}
		return s, err
	}}
	all := append([]contender{georeg}, peers...)
	results := make([][]figure, len(all))
	for i, c := range all {
		if len(steps) > 0 {
			figs, err := measure(ctx, c, filepath.Join(dir, fmt.Sprintf("node-%d", i)), size, steps)
			if err != nil {
				return nil, err
			}
			results[i] = figs
		}
	}
	pushes, err := interleavedPushes(ctx, all, dir, smallPushesTarget, "the best peer")
	if err != nil {
		return nil, err
	}
	for i := range all {
		results[i] = append(results[i], pushes[i])
	}
	return compare(all, results, "best peer"), nil
}

// compare lays the contenders' figures side by side: one row per figure of
// the first contender, with the others' values in the note and the ratio
// of the first's to the best of the others (named ref).
func compare(all []contender, results [][]figure, ref string) []row {
	var rows []row
	for i, f := range results[0] {
		var peers []string
		best := 0.0
		for j := 1; j < len(all); j++ {
			if i >= len(results[j]) || results[j][i].name != f.name {
				continue
			}
			p := results[j][i]
			peers = append(peers, all[j].name+" "+p.format())
			if best == 0 || (f.higher && p.value > best) || (!f.higher && p.value < best) {
				best = p.value
			}
		}
		r := row{name: f.name, value: f.format()}
		var notes []string
		if best > 0 && f.value > 0 {
			ratio := f.value / best
			notes = append(notes, fmt.Sprintf("%.2fx %s", ratio, ref))
			if f.ratioTarget > 0 {
				r.target = fmt.Sprintf("%s %.1fx %s", cmp(f.higher), f.ratioTarget, ref)
				notes = append(notes, distance(ratio, f.ratioTarget, f.higher))
			}
		}
		if f.target > 0 {
			t := fmt.Sprintf("%s %s", cmp(f.higher), formatValue(f.target, f.unit))
			if r.target != "" {
				t = r.target + ", " + t
			}
			r.target = t
			notes = append(notes, distance(f.value, f.target, f.higher))
		}
		notes = append(notes, peers...)
		if f.note != "" {
			notes = append(notes, f.note)
		}
		r.note = strings.Join(notes, "; ")
		rows = append(rows, r)
	}
	return rows
}

func cmp(higher bool) string {
	if higher {
		return ">="
	}
	return "<="
}

// figure is one measured value of one contender.
type figure struct {
	name   string
	value  float64
	unit   string // MiB/s, CPU-s/GiB, MiB, /s or s
	higher bool   // a higher value is better
	// target and ratioTarget are georeg's: an absolute value, and a ratio
	// to the best peer in the same run (0: none).
	target, ratioTarget float64
	note                string
}

func (f figure) format() string { return formatValue(f.value, f.unit) }

func formatValue(v float64, unit string) string {
	switch unit {
	case "s":
		return fmt.Sprintf("%.3f s", v)
	case "CPU-s/GiB", "MiB":
		return fmt.Sprintf("%.2f %s", v, unit)
	default:
		return fmt.Sprintf("%.0f %s", v, unit)
	}
}
