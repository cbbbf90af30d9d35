package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/up"
)

// upProcess is `georeg up` running as its own process.
type upProcess struct {
	cmd *exec.Cmd
}

func startUp(ctx context.Context, bin, data string, distance bool) (*upProcess, error) {
	args := []string{"up", "--data", data, "--log-level", "warn"}
	if !distance {
		args = append(args, "--no-distance")
	}
	logf, err := os.Create(data + ".log")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &upProcess{cmd: cmd}
	deadline := time.Now().Add(30 * time.Second)
	for _, port := range []string{"5001", "5002", "5003"} {
		if err := waitReady("http://127.0.0.1:"+port, time.Until(deadline)); err != nil {
			p.stop()
			return nil, fmt.Errorf("georeg up (are ports 5000-5003 free?): %w", err)
		}
	}
	return p, nil
}

func (p *upProcess) stop() { stopProcess(p.cmd, syscall.SIGINT) }

// presentIn reports whether region (base URL) holds manifest d of repo.
func presentIn(ctx context.Context, base, repo string, d digest.Digest, region string) bool {
	q := url.Values{"repository": {repo}, "reference": {d.String()}}
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/_georeg/v1/images/status?"+q.Encode(), nil)
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st struct {
		Regions []struct{ Name, State string }
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return false
	}
	for _, r := range st.Regions {
		if r.Name == region {
			return r.State == "present"
		}
	}
	return false
}

// benchReplication measures, per image size, the time from the 201 of a
// manifest PUT in eastus until westeurope holds the image complete.
func benchReplication(ctx context.Context, bin, dir string, quick bool) ([]row, error) {
	sizes := []int64{1 << 20, 10 << 20, 100 << 20}
	images := 50
	if quick {
		sizes, images = []int64{1 << 20, 10 << 20}, 5
	}
	link, _ := up.DefaultDistance("eastus", "westeurope")
	var rows []row
	for _, distance := range []bool{false, true} {
		data := filepath.Join(dir, fmt.Sprintf("up-%t", distance))
		p, err := startUp(ctx, bin, data, distance)
		if err != nil {
			return nil, err
		}
		for _, size := range sizes {
			lags, err := replicationLags(ctx, size, images)
			if err != nil {
				p.stop()
				return nil, err
			}
			p50, p99 := percentile(lags, 50), percentile(lags, 99)
			r := row{name: fmt.Sprintf("replication lag %s, eastus -> westeurope", sizeLabel(size)),
				value: fmt.Sprintf("p50 %s  p99 %s", ms(p50), ms(p99))}
			if distance {
				floor := 3*link.RTT() + time.Duration(float64(size)/float64(link.Bandwidth)*float64(time.Second))
				r.name += fmt.Sprintf(", simulated %s RTT %d MB/s", link.RTT(), link.Bandwidth/1_000_000)
				r.target = fmt.Sprintf("p99 <= 1.3 x floor %s = %s", ms(floor), ms(floor*13/10))
				r.note = fmt.Sprintf("p99 = %.2f x floor", float64(p99)/float64(floor))
			} else {
				r.name += ", loopback"
				if size == 10<<20 {
					r.target = "p99 <= 150 ms"
					r.note = distance99(p99, 150*time.Millisecond)
				}
			}
			rows = append(rows, r)
		}
		if distance {
			rs, err := deletePropagation(ctx, images)
			if err != nil {
				p.stop()
				return nil, err
			}
			rows = append(rows, rs...)
		}
		p.stop()
		os.RemoveAll(data)
	}
	return rows, nil
}

// deletedIn reports whether region (its base URL) holds the delete of
// repo@d (its own state, asking no other region).
func deletedIn(ctx context.Context, base, repo string, d digest.Digest) bool {
	q := url.Values{"repository": {repo}, "reference": {d.String()}, "local": {"true"}}
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/_georeg/v1/images/status?"+q.Encode(), nil)
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st struct{ Deleted bool }
	return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&st) == nil && st.Deleted
}

// deletePropagation pushes n small images to eastus, waits until both
// other regions hold them, then deletes them one after another in eastus
// and measures, for each, the time from the delete's 202 until
// westeurope, and southeastasia, hold the delete (polled every 2 ms).
func deletePropagation(ctx context.Context, n int) ([]row, error) {
	const east = "http://127.0.0.1:5001"
	others := map[string]string{"westeurope": "http://127.0.0.1:5002", "southeastasia": "http://127.0.0.1:5003"}
	s := &server{base: east}
	repo := "bench/deletes"
	var ds []digest.Digest
	for i := range n {
		cfg := []byte(fmt.Sprintf(`{"delete":%d}`, i))
		if err := upload(ctx, s, repo, digest.FromBytes(cfg), int64(len(cfg)), strings.NewReader(string(cfg))); err != nil {
			return nil, err
		}
		m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`,
			digest.FromBytes(cfg), len(cfg))
		req, _ := http.NewRequestWithContext(ctx, "PUT", east+"/v2/"+repo+"/manifests/d"+fmt.Sprint(i), strings.NewReader(m))
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		if err := expectCreated(req); err != nil {
			return nil, err
		}
		ds = append(ds, digest.FromString(m))
	}
	deadline := time.Now().Add(5 * time.Minute)
	for _, d := range ds {
		for name, base := range others {
			for !presentIn(ctx, base, repo, d, name) {
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("%s never reached %s", d, name)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	lags := map[string][]time.Duration{}
	for _, d := range ds {
		// Sparse deletes, as a registry sees them: each region's next feed
		// long-poll is parked at eastus by then (back to back, a delete
		// would also wait for the poll to cross the link: 2 x one way).
		time.Sleep(500 * time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "DELETE", east+"/v2/"+repo+"/manifests/"+d.String(), nil)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return nil, fmt.Errorf("delete %s: %d", d, resp.StatusCode)
		}
		t0 := time.Now()
		left := maps.Clone(others)
		for len(left) > 0 {
			for name, base := range left {
				if deletedIn(ctx, base, repo, d) {
					lags[name] = append(lags[name], time.Since(t0))
					delete(left, name)
				}
			}
			if time.Since(t0) > time.Minute {
				return nil, fmt.Errorf("the delete of %s did not reach %v", d, slices.Collect(maps.Keys(left)))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	var rows []row
	for _, name := range []string{"westeurope", "southeastasia"} {
		link, _ := up.DefaultDistance("eastus", name)
		p50, p99 := percentile(lags[name], 50), percentile(lags[name], 99)
		rows = append(rows, row{name: fmt.Sprintf("delete propagation, eastus -> %s, simulated %s RTT", name, link.RTT()),
			value:  fmt.Sprintf("p50 %s  p99 %s", ms(p50), ms(p99)),
			target: fmt.Sprintf("p99 <= 1.3 x floor %s (one way)", ms(link.Latency)),
			note:   fmt.Sprintf("p99 = %.2f x floor", float64(p99)/float64(link.Latency))})
	}
	return rows, nil
}

func distance99(p99, target time.Duration) string {
	return distance(float64(p99.Milliseconds()), float64(target.Milliseconds()), false)
}

// replicationLags pushes n images of size to eastus one after another and
// returns, for each, the time from the manifest's 201 until westeurope
// reports it present (polled every 2 ms).
func replicationLags(ctx context.Context, size int64, n int) ([]time.Duration, error) {
	const east, west = "http://127.0.0.1:5001", "http://127.0.0.1:5002"
	s := &server{base: east}
	repo := fmt.Sprintf("bench/lag%d", size>>20)
	var lags []time.Duration
	for i := range n {
		block := seededBlock(int(size>>20)*1000 + i)
		layer := digestOf(block, size)
		cfg := []byte(fmt.Sprintf(`{"image":%d}`, i))
		if err := upload(ctx, s, repo, layer, size, newRepeat(block, size)); err != nil {
			return nil, err
		}
		if err := upload(ctx, s, repo, digest.FromBytes(cfg), int64(len(cfg)), strings.NewReader(string(cfg))); err != nil {
			return nil, err
		}
		m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
			digest.FromBytes(cfg), len(cfg), layer, size)
		req, _ := http.NewRequestWithContext(ctx, "PUT", east+"/v2/"+repo+"/manifests/v"+fmt.Sprint(i), strings.NewReader(m))
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		if err := expectCreated(req); err != nil {
			return nil, err
		}
		t0 := time.Now()
		d := digest.FromString(m)
		deadline := t0.Add(5 * time.Minute)
		for !presentIn(ctx, west, repo, d, "westeurope") {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("image %d of %s never reached westeurope", i, sizeLabel(size))
			}
			time.Sleep(2 * time.Millisecond)
		}
		lags = append(lags, time.Since(t0))
	}
	return lags, nil
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
