package e2e

import (
	"os"
	"runtime"
	"strconv"
	"testing"
)

// A registry process runs with one P more than its cores, so an upload's
// writer blocked in the disk never holds the last P (cmd/georeg,
// procs.go); an operator's GOMAXPROCS is kept.
func TestARegistryProcessRunsWithASparePUnlessTheOperatorSetsIt(t *testing.T) {
	cores := runtime.GOMAXPROCS(0) // this test process's: the runtime's default unless GOMAXPROCS is set here
	if n, err := strconv.Atoi(os.Getenv("GOMAXPROCS")); err == nil && n > 0 {
		cores = runtime.NumCPU()
	}
	for _, c := range []struct {
		env  string
		want int
	}{
		{env: "GOMAXPROCS=", want: cores + 1},
		{env: "GOMAXPROCS=1", want: 1},
	} {
		data := t.TempDir()
		s := &server{t: t, addr: freeAddr(t), data: data, env: []string{c.env}}
		s.start()
		t.Cleanup(s.kill)
		got := gomaxprocsOf(t, s.addr)
		s.kill()
		if got != c.want {
			t.Errorf("with %s in its environment, georeg serve runs with GOMAXPROCS %d, want %d", c.env, got, c.want)
		}
	}
}

// gomaxprocsOf reads go_sched_gomaxprocs_threads from the /metrics of
// the process at addr.
func gomaxprocsOf(t *testing.T, addr string) int {
	t.Helper()
	n, ok := metricsOf(t, addr)["go_sched_gomaxprocs_threads{}"]
	if !ok {
		t.Fatalf("no go_sched_gomaxprocs_threads in %s's /metrics", addr)
	}
	return int(n)
}
