package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAFreshGeoregUpWarnsOfNothing: the README's first command, then a
// push through the front door, a pull from another region and Ctrl-C, as
// a new user's first minutes go. georeg up logs at warn by default, so any
// warning or error it prints is what that user reads first: there must be
// none when nothing is wrong (regions starting together, all empty, have
// no snapshot to join from, which is no fault).
func TestAFreshGeoregUpWarnsOfNothing(t *testing.T) {
	s := startUp(t)
	dir := t.TempDir()
	env := []string{"HOME=" + dir}
	if err := os.WriteFile(filepath.Join(dir, "layer.txt"), []byte("a first push"), 0o644); err != nil {
		t.Fatal(err)
	}
	runIn(t, dir, env, "tar", "-cf", "layer.tar", "layer.txt")
	runIn(t, dir, env, "crane", "append", "--insecure", "-f", "layer.tar", "-t", upDoor+"/first/app:v1")
	eventuallyRun(t, dir, env, "", "crane", "manifest", "--insecure", upRegions["westeurope"]+"/first/app:v1")
	// Then Ctrl-C, as the banner says: it stops quietly too.
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.cmd.Wait() }()
	select {
	case err := <-stopped:
		s.cmd = nil // waited for: the cleanup's kill has nothing left to do
		s.log.Close()
		if err != nil {
			t.Fatalf("georeg up after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("georeg up had not stopped 30 s after Ctrl-C")
	}
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("a fresh georeg up, one push, one pull, then Ctrl-C logged %d warnings or errors:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}
