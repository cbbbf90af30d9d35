package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/peerauth"
)

// The fault-injection rig: three `georeg serve` processes (eastus,
// westeurope, southeastasia), every replication path between them through
// a link proxy of its own (internal/link: stall, black hole, reset,
// partition on command), a `georeg route` front door before them, and,
// for the disk scenarios, a region whose data directory is a small tmpfs
// in a mount namespace of its own (the test fills and frees it).

var rigRegions = []string{"eastus", "westeurope", "southeastasia"}

// Bounds the rig configures, so that the scenarios run in seconds: every
// wait on a peer (replication.idleTimeout), the door's waits on a region.
const (
	rigPeerIdle     = 2 * time.Second
	rigDoorRead     = 2 * time.Second
	rigDoorWrite    = 5 * time.Second
	rigDoorIdle     = 5 * time.Second
	rigMinFreeSpace = 16 << 20
	// rigDrained bounds how long the door keeps sending clients to a
	// region that stopped answering or filled up: FailAfter (2) probes of
	// up to 2 s each, a probe interval (1 s) apart, and a status refresh.
	rigDrained = 8 * time.Second
)

type rig struct {
	t       *testing.T
	dir     string
	regions map[string]*server
	// links[from][to] carries from's requests to to (from follows to).
	links map[string]map[string]*link.Proxy
	door  *server
	disks map[string]*tmpfs
}

// tmpfs is a small filesystem in a mount namespace held by a sleeping
// process: the region runs in that namespace (nsenter), survives kill -9
// with its data, and the test reaches the files through /proc/<pid>/root.
type tmpfs struct {
	holder *exec.Cmd
	dir    string
}

// path is p inside the filesystem, as the test process reaches it.
func (f *tmpfs) path(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", f.holder.Process.Pid), f.dir, p)
}

// mountTmpfs mounts a tmpfs of size bytes at dir in a new mount namespace.
func mountTmpfs(t *testing.T, dir string, size int64) *tmpfs {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		fmt.Sprintf(`mount -t tmpfs -o size=%d tmpfs "$0" && echo mounted && exec sleep 86400`, size), dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare (a missing tool fails the test): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "mounted" {
		t.Fatalf("mount a tmpfs at %s: %q %v", dir, line, err)
	}
	return &tmpfs{holder: cmd, dir: dir}
}

// free returns the filesystem's free bytes.
func (f *tmpfs) free(t *testing.T) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.path("."), &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill takes all but keep bytes of the free space with a file.
func (f *tmpfs) fill(t *testing.T, keep int64) {
	t.Helper()
	file, err := os.OpenFile(f.path("filler"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	// The region writes meanwhile: a take larger than what is left by the
	// time it lands is refused whole, so take less until it fits.
	for i := 0; i < 64; i++ {
		st, _ := file.Stat()
		n := f.free(t) - keep - int64(i)*(1<<20)
		if n <= 0 {
			return
		}
		err := syscall.Fallocate(int(file.Fd()), 0, st.Size(), n)
		if err == nil {
			return
		}
		if err != syscall.ENOSPC {
			t.Fatalf("fill the disk: %v", err)
		}
	}
	t.Fatal("fill the disk: every take was refused")
}

// release frees what fill took.
func (f *tmpfs) release(t *testing.T) {
	t.Helper()
	if err := os.Remove(f.path("filler")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// startRig starts the regions, their links and the door. Regions named in
// disks get a tmpfs of that many bytes as their data directory.
func startRig(t *testing.T, disks map[string]int64) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), regions: map[string]*server{}, links: map[string]map[string]*link.Proxy{}, disks: map[string]*tmpfs{}}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := map[string]string{}
	for _, name := range rigRegions {
		addrs[name] = freeAddr(t)
	}
	for _, from := range rigRegions {
		r.links[from] = map[string]*link.Proxy{}
		for _, to := range rigRegions {
			if from == to {
				continue
			}
			p, err := link.Start(ctx, addrs[to], link.Shape{})
			if err != nil {
				t.Fatal(err)
			}
			r.links[from][to] = p
		}
	}
	t.Cleanup(func() {
		cancel()
		for _, m := range r.links {
			for _, p := range m {
				p.Wait()
			}
		}
	})
	for _, name := range rigRegions {
		data := filepath.Join(r.dir, name)
		var wrap []string
		if size, ok := disks[name]; ok {
			fs := mountTmpfs(t, data, size)
			r.disks[name] = fs
			wrap = []string{"nsenter", "-t", fmt.Sprint(fs.holder.Process.Pid), "-m", "--"}
		}
		var peers strings.Builder
		for _, to := range rigRegions {
			if to != name {
				fmt.Fprintf(&peers, "    - name: %s\n      endpoint: http://%s\n", to, r.links[name][to].Addr())
			}
		}
		cfg := fmt.Sprintf(`region:
  name: %s
  dataDir: %s
  minFreeSpace: %d
http:
  listen: %s
replication:
  secret: e2e-secret
  wait: 5s
  antiEntropyInterval: 1s
  idleTimeout: %s
  parkAfter: 5s
  endpoint: http://%s
  peers:
%soutbound:
  allow: [127.0.0.0/8]
log:
  level: info
`, name, data, rigMinFreeSpace, addrs[name], rigPeerIdle, addrs[name], peers.String())
		file := filepath.Join(r.dir, name+".yaml")
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		pprof := freeAddr(t)
		s := &server{t: t, addr: addrs[name], data: data, args: []string{"--config", file, "--pprof-listen", pprof}, wrap: wrap, pprof: pprof}
		s.start()
		t.Cleanup(s.kill)
		r.regions[name] = s
		s.logOnFailure(name)
	}
	r.door = r.startDoor()
	return r
}

// startDoor runs the front door: clients from 127.0.0.1 belong to eastus,
// .2 to westeurope, .3 to southeastasia.
func (r *rig) startDoor() *server {
	t := r.t
	s := startRoute(t, r.regions, fmt.Sprintf("probeKey: %s\nreadTimeout: %s\nwriteTimeout: %s\nidleTimeout: %s\n", peerauth.ProbeKey("e2e-secret"), rigDoorRead, rigDoorWrite, rigDoorIdle))
	addr := s.addr
	// Every region Ready and in rotation: each region's clients reach it.
	for i, name := range rigRegions {
		c := clientFrom(fmt.Sprintf("127.0.0.%d", i+1))
		waitFor(t, 30*time.Second, func() error {
			resp, err := c.Get("http://" + addr + "/v2/")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Georeg-Region"); got != name {
				return fmt.Errorf("a client of %s reaches %q", name, got)
			}
			return nil
		})
	}
	return s
}

// cut puts fault f on every link to and from region name.
func (r *rig) cut(name string, f link.Fault) {
	for from, m := range r.links {
		for to, p := range m {
			if from == name || to == name {
				p.Set(f)
			}
		}
	}
}

// heal makes every link healthy and unthrottled.
func (r *rig) heal() {
	for _, m := range r.links {
		for _, p := range m {
			p.Set(link.Healthy)
			p.Throttle(0)
		}
	}
}

// restart kills region name with SIGKILL and starts it again.
func (r *rig) restart(name string) {
	s := r.regions[name]
	s.kill9()
	s.start()
}

// signal sends sig to region name's process.
func (r *rig) signal(name string, sig syscall.Signal) {
	if err := r.regions[name].cmd.Process.Signal(sig); err != nil {
		r.t.Fatal(err)
	}
}

// converge waits until every region holds every acknowledged image in its
// own storage (asked as a peer: never read through) and returns how long
// it took; the images some region still lacks at the bound are lost.
func (r *rig) converge(imgs []image, bound time.Duration) (time.Duration, []string) {
	start := time.Now()
	for {
		var missing []string
		for _, name := range rigRegions {
			for _, img := range imgs {
				for _, p := range img.paths() {
					if !holds(r.t, r.regions[name].addr, p) {
						missing = append(missing, name+" lacks "+p)
						break
					}
				}
			}
		}
		if len(missing) == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > bound {
			return time.Since(start), missing
		}
		time.Sleep(100 * time.Millisecond) // poll interval of a bounded wait
	}
}
