package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a registry process under measurement: georeg serve, or a
// peer registry.
type server struct {
	cmd  *exec.Cmd
	addr string
	base string
	// twoStep uploads each blob with POST then PUT (the monolithic upload
	// every registry takes) instead of one POST with ?digest= (georeg's).
	twoStep bool
}

func startServer(ctx context.Context, bin, data, logLevel string) (*server, error) {
	addr := freeAddr()
	cmd := exec.CommandContext(ctx, bin, "serve", "--listen", addr, "--data", data, "--region", "bench", "--log-level", logLevel)
	if err := launch(cmd, data+".log", "http://"+addr+"/readyz", 20*time.Second); err != nil {
		return nil, fmt.Errorf("georeg serve: %w", err)
	}
	return &server{cmd: cmd, addr: addr, base: "http://" + addr}, nil
}

// waitReady polls base's /readyz until it answers 200, for at most within.
func waitReady(base string, within time.Duration) error {
	return waitReadyAt(base+"/readyz", within)
}

// waitReadyAt polls url until it answers 200, for at most within.
func waitReadyAt(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("/readyz: %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v", url, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) stop() { stopProcess(s.cmd, syscall.SIGTERM) }

// stopProcess signals cmd to stop gracefully and waits for it; past 20 s
// it is killed.
func stopProcess(cmd *exec.Cmd, sig os.Signal) {
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// cpuSeconds is the server process's user + system CPU time so far.
func (s *server) cpuSeconds() float64 {
	_, cpu, _ := procStat(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	return cpu
}

// procStat reads a process's command name and user + system CPU seconds
// from its /proc stat file; ok false when it is gone.
func procStat(path string) (comm string, cpu float64, ok bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", 0, false
	}
	// The command name is in parentheses; the fields follow it.
	open, end := strings.IndexByte(string(data), '('), strings.LastIndexByte(string(data), ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	f := strings.Fields(string(data[end+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return string(data[open+1 : end]), (utime + stime) / 100, true // USER_HZ is 100 on Linux
}

// machineCPU is the machine's busy and total CPU time so far, in
// seconds summed over its cores (/proc/stat).
func machineCPU() (busy, total float64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		total += v / 100
		if i != 3 && i != 4 { // idle, iowait
			busy += v / 100
		}
	}
	return busy, total
}

// commandCPU sums the CPU seconds so far of every process whose command
// name is comm (e.g. "postgres": the server and its backends; a process
// that ended since is not counted).
func commandCPU(comm string) float64 {
	entries, _ := os.ReadDir("/proc")
	var sum float64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if name, cpu, ok := procStat("/proc/" + e.Name() + "/stat"); ok && name == comm {
			sum += cpu
		}
	}
	return sum
}

// resetPeakRSS starts a new peak-RSS measurement (clear_refs 5).
func (s *server) resetPeakRSS() {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.cmd.Process.Pid), []byte("5"), 0)
}

// peakRSS is the server's peak resident set since the last reset, in MiB.
func (s *server) peakRSS() float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
