package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	if s.twoStep {
		return uploadTwoStep(ctx, s, repo, d, size, body)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", s.base+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), body)
	req.ContentLength = size
	return expectCreated(req)
}

// uploadTwoStep is the monolithic upload every registry takes: a POST
// that opens a session, then one PUT of the whole blob.
func uploadTwoStep(ctx context.Context, s *server, repo string, d digest.Digest, size int64, body io.Reader) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", s.base+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := expect(req, http.StatusAccepted)
	if err != nil {
		return err
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("POST %s: %w", req.URL.Path, err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequestWithContext(ctx, "PUT", loc.String(), body)
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	return expectCreated(req)
}

// expectCreated sends req and wants 201 Created.
func expectCreated(req *http.Request) error {
	_, err := expect(req, http.StatusCreated)
	return err
}

// expect sends req and wants status want; the response's body is read and
// closed, its headers kept.
func expect(req *http.Request, want int) (*http.Response, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: status %d", req.Method, req.URL.Path, resp.StatusCode)
	}
	return resp, nil
}

var bigDigest digest.Digest

func benchUpload(ctx context.Context, s *server, size int64) ([]figure, error) {
	block := seededBlock(1)
	bigDigest = digestOf(block, size)
	s.resetPeakRSS()
	cpu0, t0 := s.cpuSeconds(), time.Now()
	if err := upload(ctx, s, "bench/big", bigDigest, size, newRepeat(block, size)); err != nil {
		return nil, err
	}
	wall := time.Since(t0)
	cpu := (s.cpuSeconds() - cpu0) / (float64(size) / (1 << 30))
	label := sizeLabel(size)
	return []figure{
		{name: label + " upload, monolithic", value: mibps(size, wall), unit: "MiB/s", higher: true, ratioTarget: 2.0},
		{name: label + " upload: server CPU", value: cpu, unit: "CPU-s/GiB", target: 1.2},
		{name: label + " upload: server peak RSS", value: s.peakRSS(), unit: "MiB", target: 40},
	}, nil
}

// download GETs a blob of size bytes and returns its rate.
func download(ctx context.Context, s *server, repo string, d digest.Digest, size int64, buf []byte) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", s.base+"/v2/"+repo+"/blobs/"+d.String(), nil)
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if err != nil {
			break
		}
	}
	if n != size {
		return 0, fmt.Errorf("download of %s: %d of %d bytes (status %d)", d, n, size, resp.StatusCode)
	}
	return mibps(size, time.Since(t0)), nil
}

// benchDownload reads the blob benchUpload just pushed: the first read
// apart (what a peer region's replication fetch and the first pulls of a
// rollout get), then the median of three more.
func benchDownload(ctx context.Context, s *server, size int64) ([]figure, error) {
	buf := make([]byte, 1<<20)
	var rates []float64
	for range 4 {
		r, err := download(ctx, s, "bench/big", bigDigest, size, buf)
		if err != nil {
			return nil, err
		}
		rates = append(rates, r)
	}
	return []figure{
		{name: sizeLabel(size) + " first download, just pushed", value: rates[0], unit: "MiB/s", higher: true, ratioTarget: 1.0},
		{name: sizeLabel(size) + " download, again (median of 3)", value: median(rates[1:]), unit: "MiB/s", higher: true, target: 2560},
	}, nil
}

// parallelBlobs are the 8 blobs benchParallelUploads pushes and
// benchParallelDownloads reads first.
var parallelBlobs []digest.Digest

func benchParallelUploads(ctx context.Context, s *server, size int64) ([]figure, error) {
	each := size / 16 // 64 MiB of 1 GiB
	blocks := make([][]byte, 8)
	parallelBlobs = make([]digest.Digest, 8)
	for i := range blocks {
		blocks[i] = seededBlock(100 + i)
		parallelBlobs[i] = digestOf(blocks[i], each)
	}
	cpu0, t0 := s.cpuSeconds(), time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(blocks))
	for i, b := range blocks {
		wg.Go(func() { errs[i] = upload(ctx, s, "bench/par", parallelBlobs[i], each, newRepeat(b, each)) })
	}
	wg.Wait()
	wall := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	total := each * int64(len(blocks))
	cpu := (s.cpuSeconds() - cpu0) / (float64(total) / (1 << 30))
	name := fmt.Sprintf("8 x %s upload, concurrent", sizeLabel(each))
	return []figure{
		{name: name, value: mibps(total, wall), unit: "MiB/s", higher: true},
		{name: name + ": server CPU", value: cpu, unit: "CPU-s/GiB"},
	}, nil
}

// benchParallelDownloads reads the 8 blobs just pushed, concurrently, each
// for the first time.
func benchParallelDownloads(ctx context.Context, s *server, size int64) ([]figure, error) {
	each := size / 16
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(parallelBlobs))
	for i, d := range parallelBlobs {
		wg.Go(func() {
			_, errs[i] = download(ctx, s, "bench/par", d, each, make([]byte, 1<<20))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	total := each * int64(len(parallelBlobs))
	return []figure{{name: fmt.Sprintf("8 x %s first downloads, concurrent", sizeLabel(each)), value: mibps(total, time.Since(t0)), unit: "MiB/s", higher: true}}, nil
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

func benchManifestGets(ctx context.Context, s *server, _ int64) ([]figure, error) {
	if err := pushImage(ctx, s, "bench/small", "v1", 0); err != nil {
		return nil, err
	}
	var figs []figure
	for _, clients := range []int{1, 16, 64} {
		rate, err := manifestGets(ctx, s, clients, 5*time.Second)
		if err != nil {
			return nil, err
		}
		f := figure{name: fmt.Sprintf("manifest GET by tag, %d clients", clients), value: rate, unit: "/s", higher: true}
		if clients == 16 {
			f.ratioTarget = 2.0
		}
		figs = append(figs, f)
	}
	return figs, nil
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
