package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

var client = &http.Client{Transport: &http.Transport{
	MaxIdleConnsPerHost: 128, WriteBufferSize: 256 << 10, ReadBufferSize: 256 << 10,
}}

// repeatReader yields size bytes: block repeated, with seed in the first
// bytes so each blob has its own digest.
type repeatReader struct {
	block []byte
	left  int64
	off   int
}

func newRepeat(block []byte, size int64) *repeatReader {
	return &repeatReader{block: block, left: size}
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.block[r.off:])
	if int64(n) > r.left {
		n = int(r.left)
	}
	r.off = (r.off + n) % len(r.block)
	r.left -= int64(n)
	return n, nil
}

func seededBlock(seed int) []byte {
	b := make([]byte, 1<<20)
	_, _ = rand.Read(b)
	copy(b, fmt.Sprintf("seed-%d-", seed))
	return b
}

func digestOf(block []byte, size int64) digest.Digest {
	dg := digest.SHA256.Digester()
	_, _ = io.Copy(dg.Hash(), newRepeat(block, size))
	return dg.Digest()
}

func upload(ctx context.Context, s *server, repo string, d digest.Digest, size int64, body io.Reader) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", s.base+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), body)
	req.ContentLength = size
	return expectCreated(req)
}

// expectCreated sends req and wants 201 Created.
func expectCreated(req *http.Request) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s %s: status %d", req.Method, req.URL.Path, resp.StatusCode)
	}
	return nil
}

var bigDigest digest.Digest

func benchUpload(ctx context.Context, s *server, size int64) ([]row, error) {
	block := seededBlock(1)
	bigDigest = digestOf(block, size)
	s.resetPeakRSS()
	cpu0, t0 := s.cpuSeconds(), time.Now()
	if err := upload(ctx, s, "bench/big", bigDigest, size, newRepeat(block, size)); err != nil {
		return nil, err
	}
	wall := time.Since(t0)
	cpu := (s.cpuSeconds() - cpu0) / (float64(size) / (1 << 30))
	rate := mibps(size, wall)
	rss := s.peakRSS()
	label := sizeLabel(size)
	return []row{
		{label + " upload, monolithic, fsynced", fmt.Sprintf("%.0f MiB/s", rate), ">= 600 MiB/s", distance(rate, 600, true)},
		{label + " upload: server CPU", fmt.Sprintf("%.2f CPU-s/GiB", cpu), "<= 1.2 CPU-s/GiB", distance(cpu, 1.2, false)},
		{label + " upload: server peak RSS", fmt.Sprintf("%.1f MiB", rss), "<= 40 MiB", distance(rss, 40, false)},
	}, nil
}

func benchDownload(ctx context.Context, s *server, size int64) ([]row, error) {
	buf := make([]byte, 1<<20)
	var rates []float64
	for range 3 {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.base+"/v2/bench/big/blobs/"+bigDigest.String(), nil)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		var n int64
		for {
			k, err := resp.Body.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		if n != size {
			return nil, fmt.Errorf("download: %d of %d bytes", n, size)
		}
		rates = append(rates, mibps(size, time.Since(t0)))
	}
	slices.Sort(rates)
	r := rates[1] / 1024
	return []row{{sizeLabel(size) + " download (median of 3)", fmt.Sprintf("%.2f GiB/s", r), ">= 2.5 GiB/s", distance(r, 2.5, true)}}, nil
}

func benchParallelUploads(ctx context.Context, s *server, size int64) ([]row, error) {
	each := size / 16 // 64 MiB of 1 GiB
	type blob struct {
		block []byte
		d     digest.Digest
	}
	blobs := make([]blob, 8)
	for i := range blobs {
		b := seededBlock(100 + i)
		blobs[i] = blob{b, digestOf(b, each)}
	}
	cpu0, t0 := s.cpuSeconds(), time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(blobs))
	for i, b := range blobs {
		wg.Go(func() { errs[i] = upload(ctx, s, "bench/par", b.d, each, newRepeat(b.block, each)) })
	}
	wg.Wait()
	wall := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	total := each * int64(len(blobs))
	cpu := (s.cpuSeconds() - cpu0) / (float64(total) / (1 << 30))
	return []row{{fmt.Sprintf("8 x %s upload, concurrent", sizeLabel(each)), fmt.Sprintf("%.0f MiB/s", mibps(total, wall)), "", fmt.Sprintf("%.2f CPU-s/GiB", cpu)}}, nil
}

// pushImage pushes a small image (config, one layer, manifest) to repo:tag.
func pushImage(ctx context.Context, s *server, repo, tag string, seed int) error {
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","seed":%d}`, seed))
	layer := bytes.Repeat([]byte(fmt.Sprintf("layer-%d;", seed)), 100)
	for _, b := range [][]byte{cfg, layer} {
		if err := upload(ctx, s, repo, digest.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err != nil {
			return err
		}
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer))
	req, _ := http.NewRequestWithContext(ctx, "PUT", s.base+"/v2/"+repo+"/manifests/"+tag, strings.NewReader(m))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	return expectCreated(req)
}

func benchManifestGets(ctx context.Context, s *server, _ int64) ([]row, error) {
	if err := pushImage(ctx, s, "bench/small", "v1", 0); err != nil {
		return nil, err
	}
	var rows []row
	for _, clients := range []int{1, 16, 64} {
		rate, err := manifestGets(ctx, s, clients, 5*time.Second)
		if err != nil {
			return nil, err
		}
		r := row{fmt.Sprintf("manifest GET by tag, %d clients", clients), fmt.Sprintf("%.0f /s", rate), "", "keep-alive HTTP/1.1"}
		if clients == 16 {
			r.target, r.note = ">= 19,000 /s", distance(rate, 19000, true)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// manifestGets runs clients keep-alive connections, each sending one GET
// at a time for d, with a lean client (as wrk is) so the load generator
// takes as little of the shared CPU as it can.
func manifestGets(ctx context.Context, s *server, clients int, d time.Duration) (float64, error) {
	req := []byte("GET /v2/bench/small/manifests/v1 HTTP/1.1\r\nHost: " + s.addr +
		"\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n")
	var mu sync.Mutex
	total, firstErr := 0, error(nil)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			n, err := getLoop(ctx, s.addr, req, deadline)
			mu.Lock()
			total += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(total) / d.Seconds(), firstErr
}

func getLoop(ctx context.Context, addr string, req []byte, deadline time.Time) (int, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	n := 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := c.Write(req); err != nil {
			return n, err
		}
		status, err := br.ReadSlice('\n')
		if err != nil {
			return n, err
		}
		if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
			return n, fmt.Errorf("manifest GET: %s", status)
		}
		length := 0
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return n, err
			}
			if len(line) <= 2 {
				break
			}
			if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if _, err := br.Discard(length); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func benchSmallPushes(ctx context.Context, s *server, _ int64) ([]row, error) {
	var walls []float64
	for round := range 3 {
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, 100)
		for i := range 100 {
			wg.Go(func() {
				errs[i] = pushImage(ctx, s, fmt.Sprintf("bench/push%d", i), fmt.Sprintf("r%d", round), round*1000+i)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		walls = append(walls, time.Since(t0).Seconds())
	}
	slices.Sort(walls)
	return []row{{"100 concurrent small pushes (median of 3)", fmt.Sprintf("%.3f s", walls[1]), "<= 0.35 s", distance(walls[1], 0.35, false)}}, nil
}

func sizeLabel(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// distance says how far a figure is from its target.
func distance(v, target float64, higherIsBetter bool) string {
	met := v >= target
	if !higherIsBetter {
		met = v <= target
	}
	pct := (v - target) / target * 100
	if met {
		return fmt.Sprintf("meets target (%+.0f%%)", pct)
	}
	return fmt.Sprintf("SHORT of target by %.0f%%", abs(pct))
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
