package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a georeg process of the front-door benchmark.
type proc struct {
	cmd  *exec.Cmd
	addr string
}

// startProc runs `bin args...` (a georeg subcommand listening on addr),
// its output to logFile, and waits for its /readyz.
func startProc(ctx context.Context, bin, logFile, addr string, args ...string) (*proc, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	if err := launch(cmd, logFile, "http://"+addr+"/readyz", 30*time.Second); err != nil {
		return nil, fmt.Errorf("georeg %s: %w", args[0], err)
	}
	return &proc{cmd: cmd, addr: addr}, nil
}

// launch starts cmd with its output to logFile and waits, at most within,
// for readyURL to answer 200; a process that does not get there is killed.
func launch(cmd *exec.Cmd, logFile, readyURL string, within time.Duration) error {
	logf, err := os.Create(logFile)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := waitReadyAt(readyURL, within); err != nil {
		stopProcess(cmd, syscall.SIGKILL)
		return err
	}
	return nil
}

// server is p as a server to measure.
func (p *proc) server() *server { return &server{cmd: p.cmd, addr: p.addr, base: "http://" + p.addr} }

func (p *proc) cpu() float64 { return p.server().cpuSeconds() }

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ""
	}
	defer l.Close()
	return l.Addr().String()
}

// regionSet runs three `georeg serve` regions (westeurope with data
// endpoints when data is set) and `georeg route` before them.
type regionSet struct {
	regions map[string]*proc
	door    *proc
}

func startRegionSet(ctx context.Context, bin, dir string, data bool) (*regionSet, error) {
	names := []string{"eastus", "westeurope", "southeastasia"}
	addrs := map[string]string{}
	for _, n := range names {
		addrs[n] = freeAddr()
	}
	rs := &regionSet{regions: map[string]*proc{}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, n := range names {
		var peers strings.Builder
		for _, p := range names {
			if p != n {
				fmt.Fprintf(&peers, "    - name: %s\n      endpoint: http://%s\n", p, addrs[p])
			}
		}
		httpCfg := fmt.Sprintf("  listen: %s\n", addrs[n])
		if data && n == "westeurope" {
			httpCfg += fmt.Sprintf("  dataEndpoints: true\n  dataListen: %s\n", freeAddr())
		}
		cfg := fmt.Sprintf("region:\n  name: %s\n  dataDir: %s\nhttp:\n%sreplication:\n  secret: bench\n  peers:\n%slog:\n  level: warn\n",
			n, filepath.Join(dir, n), httpCfg, peers.String())
		file := filepath.Join(dir, n+".yaml")
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		p, err := startProc(ctx, bin, filepath.Join(dir, n+".log"), addrs[n], "serve", "--config", file)
		if err != nil {
			rs.stop()
			return nil, err
		}
		rs.regions[n] = p
	}
	rcfg := fmt.Sprintf("regions:\n  - {name: eastus, endpoint: \"http://%s\"}\n  - {name: westeurope, endpoint: \"http://%s\"}\n  - {name: southeastasia, endpoint: \"http://%s\"}\nlocations:\n  - {cidr: 127.0.0.1/32, region: eastus}\n  - {cidr: 127.0.0.2/32, region: westeurope}\n  - {cidr: 127.0.0.3/32, region: southeastasia}\nfallback:\n  westeurope: [eastus, southeastasia]\n",
		addrs["eastus"], addrs["westeurope"], addrs["southeastasia"])
	file := filepath.Join(dir, "route.yaml")
	if err := os.WriteFile(file, []byte(rcfg), 0o644); err != nil {
		rs.stop()
		return nil, err
	}
	door := freeAddr()
	p, err := startProc(ctx, bin, filepath.Join(dir, "route.log"), door, "route", "--config", file, "--listen", door, "--log-level", "warn")
	if err != nil {
		rs.stop()
		return nil, err
	}
	rs.door = p
	return rs, nil
}

func (rs *regionSet) stop() {
	if rs.door != nil {
		stopProcess(rs.door.cmd, syscall.SIGTERM)
	}
	for _, p := range rs.regions {
		if p.cmd.ProcessState == nil {
			stopProcess(p.cmd, syscall.SIGTERM)
		}
	}
}

func clientAt(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}}
}

// timedGets returns the latencies of n sequential GETs of url.
func timedGets(c *http.Client, url string, n int) ([]time.Duration, error) {
	var out []time.Duration
	for range n {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET %s: %d", url, resp.StatusCode)
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

func benchFrontDoor(ctx context.Context, bin, dir string, quick bool) ([]row, error) {
	var rows []row
	gets := 2000
	blobSize := int64(1 << 30)
	if quick {
		gets, blobSize = 200, 64<<20
	}
	for _, data := range []bool{false, true} {
		rs, err := startRegionSet(ctx, bin, filepath.Join(dir, fmt.Sprintf("door-%t", data)), data)
		if err != nil {
			return nil, err
		}
		west := rs.regions["westeurope"]
		s := &server{base: "http://" + west.addr}
		if err := pushImage(ctx, s, "bench/door", "v1", 7); err != nil {
			rs.stop()
			return nil, err
		}
		block := seededBlock(77)
		bd := digestOf(block, blobSize)
		if err := upload(ctx, s, "bench/door", bd, blobSize, newRepeat(block, blobSize)); err != nil {
			rs.stop()
			return nil, err
		}
		c := clientAt("127.0.0.2") // a westeurope client
		home := false
		for i := 0; i < 1500 && !home; i++ { // the door has probed and routes this client home
			resp, err := c.Get("http://" + rs.door.addr + "/v2/")
			if err == nil {
				resp.Body.Close()
				home = resp.Header.Get("X-Georeg-Region") == "westeurope"
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !home {
			rs.stop()
			return nil, fmt.Errorf("the front door never routed a westeurope client home")
		}
		if !data {
			direct, err := timedGets(c, "http://"+west.addr+"/v2/bench/door/manifests/v1", gets)
			if err != nil {
				rs.stop()
				return nil, err
			}
			door, err := timedGets(c, "http://"+rs.door.addr+"/v2/bench/door/manifests/v1", gets)
			if err != nil {
				rs.stop()
				return nil, err
			}
			p50 := percentile(door, 50) - percentile(direct, 50)
			p99 := percentile(door, 99) - percentile(direct, 99)
			rows = append(rows, row{name: "front door: latency added to a manifest GET",
				value: fmt.Sprintf("p50 +%s  p99 +%s", us(p50), us(p99)),
				note:  fmt.Sprintf("direct p50 %s p99 %s; through the door p50 %s p99 %s; %d sequential GETs each", us(percentile(direct, 50)), us(percentile(direct, 99)), us(percentile(door, 50)), us(percentile(door, 99)), gets)})
		}
		// Front-door CPU per GiB of blob pulled through it.
		cpu0 := rs.door.cpu()
		resp, err := c.Get("http://" + rs.door.addr + "/v2/bench/door/blobs/" + bd.String())
		if err != nil {
			rs.stop()
			return nil, err
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != blobSize {
			rs.stop()
			return nil, fmt.Errorf("pulled %d of %d bytes through the door: status %d via %s", n, blobSize, resp.StatusCode, resp.Header.Get("X-Georeg-Region"))
		}
		perGiB := (rs.door.cpu() - cpu0) / (float64(blobSize) / (1 << 30))
		mode := "proxied by the door"
		if data {
			mode = "data endpoints: redirected past the door"
		}
		rows = append(rows, row{name: "front door CPU per GiB of blob pulled, " + mode, value: fmt.Sprintf("%.3f CPU-s/GiB", perGiB)})
		if !data {
			r, err := measureFailover(rs, c)
			if err != nil {
				rs.stop()
				return nil, err
			}
			rows = append(rows, r)
		}
		rs.stop()
	}
	return rows, nil
}

// measureFailover kills westeurope while its client pulls through the
// door and reports the longest time without a successful pull.
func measureFailover(rs *regionSet, c *http.Client) (row, error) {
	url := "http://" + rs.door.addr + "/v2/bench/door/manifests/v1"
	rs.regions["westeurope"].cmd.Process.Signal(syscall.SIGKILL)
	_ = rs.regions["westeurope"].cmd.Wait()
	killed := time.Now()
	lastOK, worst, failed := killed, time.Duration(0), 0
	var firstOther time.Duration = -1
	for time.Since(killed) < 5*time.Second {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		now := time.Now()
		if err == nil && resp.StatusCode == 200 {
			if gap := now.Sub(lastOK); gap > worst {
				worst = gap
			}
			lastOK = now
			if firstOther < 0 && resp.Header.Get("X-Georeg-Region") != "westeurope" {
				firstOther = now.Sub(killed)
			}
		} else {
			failed++
		}
		time.Sleep(5 * time.Millisecond)
	}
	return row{name: "front door: failover when a region is killed (kill -9)",
		value:  fmt.Sprintf("longest gap between good pulls %s; first pull from another region %s after the kill", ms(worst), ms(firstOther)),
		target: "clients fail over within 3 s",
		note:   fmt.Sprintf("%d pulls failed in 5 s: %s", failed, distance(worst.Seconds(), 3, false))}, nil
}

func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }
