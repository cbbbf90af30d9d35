// Package e2e runs the georeg binary as a process and drives it with real
// clients (crane, regctl, skopeo, containerd's ctr) and with kill -9.
// `make test` installs the clients; a missing one fails its test.
package e2e

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/tlsconf"
)

// georegBin is the binary under test, built once by TestMain.
var georegBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "georeg-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	georegBin = filepath.Join(dir, "georeg")
	// What `georeg login` remembers stays in this run: no test reads the
	// machine's profile or leaves one behind.
	os.Setenv("GEOREG_CONFIG_DIR", filepath.Join(dir, "config"))
	build := exec.Command("go", "build", "-o", georegBin, "../cmd/georeg")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build georeg:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address with a port nobody listens on now,
// and that no other process will be given meanwhile: the port is chosen
// below the kernel's ephemeral range, which is where every listener on
// port 0 and every outgoing connection of the packages testing beside
// this one get theirs (a port picked by listening on 0 and closing went
// back to that pool: another package's server once took one before the
// region meant for it bound it, and answered its readiness check). No
// port is handed out twice in a run.
func freeAddr(t *testing.T) string {
	t.Helper()
	lo, hi := fixedPortRange()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 2000 { // bounded: the range holds thousands of ports
		p := lo + mrand.IntN(hi-lo)
		if portsGiven[p] {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken
		}
		l.Close()
		portsGiven[p] = true
		return addr
	}
	t.Fatalf("no free loopback port in %d-%d", lo, hi)
	return ""
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// fixedPortRange is where freeAddr chooses: from 10000 up to the start
// of the kernel's ephemeral range (net.ipv4.ip_local_port_range), or
// above its end when that leaves more room.
func fixedPortRange() (lo, hi int) {
	ephLo, ephHi := 32768, 60999 // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var a, z int
		if n, _ := fmt.Sscan(string(b), &a, &z); n == 2 && a > 0 && z >= a {
			ephLo, ephHi = a, z
		}
	}
	if below, above := ephLo-10000, 65535-ephHi; below >= above && below > 0 {
		return 10000, ephLo
	} else if above > 0 {
		return ephHi + 1, 65536
	}
	return 10000, 65536 // the whole range is ephemeral: choose anywhere
}

// server is a `georeg serve` process.
type server struct {
	t    *testing.T
	addr string
	data string
	args []string // serve's arguments; default: flags for addr and data
	sub  string   // the subcommand; default serve
	// tlsCA, when set, makes the readiness check use HTTPS trusting it.
	tlsCA string
	env   []string // more environment variables for the process
	// wrap, when set, runs georeg under this command (e.g. nsenter into a
	// mount namespace holding a small filesystem): wrap..., georeg, sub, args.
	wrap []string
	cmd  *exec.Cmd
	log  *os.File
	// pprof, when set, is the address the process serves Go profiles on
	// (--pprof-listen): a failure prints its replication goroutines.
	pprof string
}

// startServer runs georeg serve on a fresh port over data and waits until
// it is ready. The process is killed at cleanup if still running.
func startServer(t *testing.T, data string) *server {
	t.Helper()
	s := &server{t: t, addr: freeAddr(t), data: data}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *server) start() {
	s.t.Helper()
	log, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	s.log = log
	args := s.args
	if args == nil {
		args = []string{"--listen", s.addr, "--data", s.data, "--region", "eastus", "--log-level", "warn", "--outbound-allow", "127.0.0.0/8"}
	}
	sub := s.sub
	if sub == "" {
		sub = "serve"
	}
	s.cmd = exec.Command(georegBin, append([]string{sub}, args...)...)
	if len(s.wrap) > 0 {
		s.cmd = exec.Command(s.wrap[0], append(append(s.wrap[1:len(s.wrap):len(s.wrap)], georegBin, sub), args...)...)
	}
	s.cmd.Env = append(os.Environ(), s.env...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	// What answers on the address must be this process: a server left
	// from an earlier run would pass the readiness check below and take
	// the test's requests.
	if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
		c.Close()
		s.t.Fatalf("%s answers before georeg %s started there: another process (a georeg left from an earlier run?) holds it", s.addr, sub)
	}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	client, scheme := &http.Client{Timeout: 2 * time.Second}, "http://" // bounded: a port held by something that does not answer
	if s.tlsCA != "" {
		tc, err := tlsconf.Client(s.tlsCA)
		if err != nil {
			s.t.Fatal(err)
		}
		client, scheme = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}, "https://"
	}
	for {
		resp, err := client.Get(scheme + s.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if exited(s.cmd.Process.Pid) {
			b, _ := os.ReadFile(log.Name())
			s.t.Fatalf("georeg %s for %s exited before it was ready; its log:\n%s", sub, s.addr, lastLines(string(b), 20))
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("georeg serve on %s not ready after 20s: %v", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
}

// exited reports whether process pid has exited and waits to be reaped
// (a zombie), without reaping it: the server's kill still waits for it.
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// logPath is where the process's output goes: beside its data directory.
func (s *server) logPath() string {
	return filepath.Join(filepath.Dir(s.data), filepath.Base(s.data)+".log")
}

// logOnFailure prints, when the test fails, what the process logged
// (requests aside: one line each, not what went wrong), for the
// failure's reader: the file goes with the test's directory.
func (s *server) logOnFailure(name string) {
	t := s.t
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		b, _ := os.ReadFile(s.logPath())
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if !strings.Contains(l, "msg=request ") {
				lines = append(lines, l)
			}
		}
		t.Logf("%s's log, last %d of %d lines:\n%s", name, min(150, len(lines)), len(lines), strings.Join(lines[max(0, len(lines)-150):], "\n"))
		if s.pprof != "" && s.cmd != nil {
			t.Logf("%s's goroutines in replication and the region:\n%s", name, s.goroutines())
		}
	})
}

// goroutines returns the stacks of the process's goroutines that run
// replication or region code (what a wait that did not end was waiting
// on), read from its profile listener within a bound.
func (s *server) goroutines() string {
	b, err := bodyOf("http://"+s.pprof+"/debug/pprof/goroutine?debug=2", 64<<20)
	if err != nil {
		return err.Error()
	}
	var keep []string
	for _, g := range strings.Split(b, "\n\n") {
		if strings.Contains(g, "internal/replicate.") || strings.Contains(g, "internal/region.") {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}

// bodyOf GETs u and returns up to limit bytes of its body, within 5 s
// (a stopped or hung process does not answer).
func bodyOf(u string, limit int64) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	return string(b), err
}

// kill9 sends SIGKILL and waits for the process to die.
func (s *server) kill9() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
	s.log.Close()
}

func (s *server) kill() { s.kill9() }

// run runs a client command with a deadline and returns its output; a
// missing binary fails the test.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (make test installs it): %v", name, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}
