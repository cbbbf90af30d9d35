package main

import (
	"os"
	"runtime"
	"strconv"
)

// A registry process (serve, up) runs with one P more than the cores the
// Go runtime would use (runtime.GOMAXPROCS's default: the CPUs it may run
// on, or its cgroup's CPU limit). An upload's writer blocks in O_DIRECT
// writes of 2.5 MiB while its reader hashes the next buffer; with as many
// Ps as cores, no P is idle during the write, so the runtime's monitor
// takes the writer's P from it and, having taken one, wakes every 20 µs
// instead of every 10 ms: half the process's context switches during an
// upload. With a spare P, a write blocked in the kernel leaves an idle P
// and nothing is taken. Measured (docs/performance.md, "A spare P"): a
// 1 GiB upload's CPU 13–20 % lower, manifest GETs and small pushes
// unchanged. An operator's GOMAXPROCS is kept as set.

// procsWithSpare is the GOMAXPROCS of a registry process: cores+1, or
// what the operator set (set: the GOMAXPROCS variable holds a count the
// runtime took), which is kept (0: leave it).
func procsWithSpare(cores int, set bool) int {
	if set || cores < 1 {
		return 0
	}
	return cores + 1
}

// spareProc gives this process its spare P (procsWithSpare). It is called
// before the process starts serving; Go then no longer follows a change
// of the cgroup's CPU limit while running (a restart does).
func spareProc() {
	n, err := strconv.Atoi(os.Getenv("GOMAXPROCS"))
	if n := procsWithSpare(runtime.GOMAXPROCS(0), err == nil && n > 0); n > 0 {
		runtime.GOMAXPROCS(n)
	}
}
