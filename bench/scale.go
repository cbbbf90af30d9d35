package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/replicate"
)

// benchScale measures replication's cost against the number of regions
// (issue 25): for N = 3 and 6, N `georeg serve` regions on loopback, each
// listing every other as a peer; images pushed to r1 only. It reports
// what r1 served to the others (origin egress, as a multiple of the
// pushed bytes), what all regions served each other, ack records applied
// per manifest across the mesh, the regions' CPU while replicating, the
// lag p99 from a push's 201 to each other region holding the image, and
// the CPU of a status call; then a region N+1 joins and its time to
// Ready and CPU, and the old regions' CPU meanwhile.
func benchScale(ctx context.Context, bin, dir string, quick bool) ([]row, error) {
	images, layer := 20, int64(5<<20)
	if quick {
		images = 5
	}
	var rows []row
	for _, n := range []int{3, 6} {
		fmt.Fprintf(os.Stderr, "  %d regions ...\n", n)
		rs, err := scaleAt(ctx, bin, filepath.Join(dir, fmt.Sprintf("scale-%d", n)), n, images, layer)
		if err != nil {
			return nil, err
		}
		rows = append(rows, rs...)
	}
	return rows, nil
}

// scaleRegion is one region of the mesh.
type scaleRegion struct {
	name, addr string
	p          *proc
}

func (r *scaleRegion) base() string { return "http://" + r.addr }

// startMesh starts the regions start of names (at addrs), each with
// every region in peers but itself as a peer.
func startMesh(ctx context.Context, bin, dir string, names, addrs []string, start, peers []int) ([]*scaleRegion, error) {
	var out []*scaleRegion
	for _, i := range start {
		n := names[i]
		var ps strings.Builder
		for _, j := range peers {
			if j != i {
				fmt.Fprintf(&ps, "    - name: %s\n      endpoint: http://%s\n", names[j], addrs[j])
			}
		}
		cfg := fmt.Sprintf("region:\n  name: %s\n  dataDir: %s\nhttp:\n  listen: %s\nreplication:\n  secret: bench\n  peers:\n%slog:\n  level: warn\n",
			n, filepath.Join(dir, n), addrs[i], ps.String())
		file := filepath.Join(dir, n+".yaml")
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			return out, err
		}
		p, err := startProc(ctx, bin, filepath.Join(dir, n+".log"), addrs[i], "serve", "--config", file)
		if err != nil {
			return out, err
		}
		out = append(out, &scaleRegion{name: n, addr: addrs[i], p: p})
	}
	return out, nil
}

func scaleAt(ctx context.Context, bin, dir string, n, images int, layer int64) ([]row, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	names, addrs := make([]string, n+1), make([]string, n+1)
	all := make([]int, n+1)
	for i := range n + 1 {
		names[i], addrs[i], all[i] = fmt.Sprintf("r%d", i+1), freeAddr(), i
	}
	// The first n know each other and the region that joins later (which
	// is down until then: a peer that does not answer).
	regions, err := startMesh(ctx, bin, dir, names, addrs, all[:n], all)
	defer func() {
		for _, r := range regions {
			if r.p.cmd.ProcessState == nil {
				stopProcess(r.p.cmd, os.Interrupt)
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	origin := regions[0]
	sent0 := make([]float64, n)
	cpu0 := make([]float64, n)
	for i, r := range regions {
		sent0[i] = blobBytesSent(r.base())
		cpu0[i] = r.p.server().cpuSeconds()
	}

	// Push, and time each image's arrival in every other region.
	type pushed struct {
		repo, tag string
		d         digest.Digest
		at        time.Time
	}
	var ps []pushed
	s := &server{base: origin.base()}
	for i := range images {
		repo, tag := fmt.Sprintf("scale/app%d", i), "v1"
		d, err := pushLayered(ctx, s, repo, tag, layer, i)
		if err != nil {
			return nil, err
		}
		ps = append(ps, pushed{repo, tag, d, time.Now()})
	}
	var lags []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, r := range regions[1:] {
		wg.Go(func() {
			for _, p := range ps {
				deadline := time.Now().Add(5 * time.Minute)
				for !presentIn(ctx, r.base(), p.repo, p.d, r.name) {
					if time.Now().After(deadline) {
						errs <- fmt.Errorf("%s: %s not present after 5 min", r.name, p.repo)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				mu.Lock()
				lags = append(lags, time.Since(p.at))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second) // the last applies settle
	pushedBytes := float64(images) * float64(layer)
	var total, cpu float64
	var acks, applied float64
	for i, r := range regions {
		sent := blobBytesSent(r.base()) - sent0[i]
		total += sent
		cpu += r.p.server().cpuSeconds() - cpu0[i]
		acks += appliedOfKind(r.base(), "ack")
		applied += metricSum(r.base(), "georeg_replication_applied_total", "")
	}
	originRatio := (blobBytesSent(origin.base()) - sent0[0]) / pushedBytes
	totalRatio := total / (float64(n-1) * pushedBytes)
	slices.Sort(lags)
	p99 := lags[len(lags)*99/100]
	label := fmt.Sprintf("scale, %d regions, %d x %d MiB pushed to r1", n, images, layer>>20)
	rows := []row{
		{label + ": origin egress", fmt.Sprintf("%.2f x pushed bytes", originRatio), "<= 2.0 x", distance(originRatio, 2.0, false)},
		{label + ": inter-region bytes", fmt.Sprintf("%.2f x (N-1) x pushed", totalRatio), "<= 1.05 x", distance(totalRatio, 1.05, false)},
		{label + ": ack records applied per manifest", fmt.Sprintf("%.1f", acks/float64(images)), "0 (marks)", fmt.Sprintf("was (N-1)^2 = %d", (n-1)*(n-1))},
		{label + ": records applied per image, all regions", fmt.Sprintf("%.1f", applied/float64(images)), "O(N)", fmt.Sprintf("N-1 = %d regions apply each record", n-1)},
		{label + ": regions' CPU replicating", fmt.Sprintf("%.2f CPU-s", cpu), "", ""},
		{label + ": lag p99, push to present", ms(p99), "", "loopback, no simulated distance"},
	}

	// A status call, on every region.
	var statusCPU float64
	const calls = 20
	for _, r := range regions {
		c0 := r.p.server().cpuSeconds()
		for range calls {
			resp, err := http.Get(r.base() + "/_georeg/v1/status")
			if err != nil {
				return nil, err
			}
			var st replicate.Status
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		statusCPU += (r.p.server().cpuSeconds() - c0) / calls
	}
	rows = append(rows, row{label + ": a status call, CPU", fmt.Sprintf("%.1f ms (mean of the regions)", statusCPU/float64(n)*1000), "", "USER_HZ resolution: 10 ms per 20 calls"})

	// Region n+1 joins.
	for i, r := range regions {
		cpu0[i] = r.p.server().cpuSeconds()
	}
	start := time.Now()
	joined, err := startMesh(ctx, bin, dir, names, addrs, all[n:], all)
	regions = append(regions, joined...)
	if err != nil {
		return nil, err
	}
	newcomer := joined[0]
	if err := waitStateReady(newcomer.base(), start.Add(10*time.Minute)); err != nil {
		return nil, fmt.Errorf("r%d: %w", n+1, err)
	}
	ready := time.Since(start)
	var old float64
	for i, r := range regions[:n] {
		old = max(old, r.p.server().cpuSeconds()-cpu0[i])
	}
	joinCPU := newcomer.p.server().cpuSeconds()
	rows = append(rows, row{label + ": a region joins", fmt.Sprintf("Ready in %s", ready.Round(time.Millisecond)), "",
		fmt.Sprintf("its CPU %.2f s (%.1f ms per manifest); each old region's at most %.2f s", joinCPU, joinCPU*1000/float64(images), old)})
	return rows, nil
}

// pushLayered pushes an image with one random layer of size bytes and
// returns its manifest's digest.
func pushLayered(ctx context.Context, s *server, repo, tag string, size int64, seed int) (digest.Digest, error) {
	layer := make([]byte, size)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'g', 'e', 'o'})
	_, _ = r.Read(layer)
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","seed":%d}`, seed))
	for _, b := range [][]byte{cfg, layer} {
		if err := upload(ctx, s, repo, digest.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err != nil {
			return "", err
		}
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer))
	req, _ := http.NewRequestWithContext(ctx, "PUT", s.base+"/v2/"+repo+"/manifests/"+tag, strings.NewReader(m))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if err := expectCreated(req); err != nil {
		return "", err
	}
	return digest.FromString(m), nil
}

// blobBytesSent is a region's blob bytes sent, from its /metrics.
func blobBytesSent(base string) float64 {
	return metricSum(base, "georeg_http_sent_bytes_total", `route="blob"`)
}

// appliedOfKind is how many feed records of kind a region applied.
func appliedOfKind(base, kind string) float64 {
	return metricSum(base, "georeg_replication_applied_total", `kind="`+kind+`"`)
}

// metricSum sums the samples of metric name at base's /metrics whose
// labels contain filter ("" for every sample).
func metricSum(base, name, filter string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if filter != "" && !strings.Contains(line, filter) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
