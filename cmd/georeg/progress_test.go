package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/georeg/georeg/internal/replicate"
)

// TestProgressOffATerminalIsPlainLinesAtAPace: piped, progress is one
// plain line (no carriage return, no escape code) at most every 5 s, and
// the final one always.
func TestProgressOffATerminalIsPlainLinesAtAPace(t *testing.T) {
	var out bytes.Buffer
	p := &progress{w: &out}
	for i := range 50 {
		p.show(step{what: "import demo/app:v1: 1/2 blobs", done: int64(i) << 20, total: 100 << 20}, false)
	}
	p.show(step{what: "import demo/app:v1: 2/2 blobs", done: 100 << 20, total: 100 << 20}, true)
	p.end()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (the first, then the final one):\n%s", len(lines), out.String())
	}
	if want := "import demo/app:v1: 2/2 blobs  100.0%  100.0 MiB/100.0 MiB"; lines[1] != want {
		t.Fatalf("final line %q, want %q", lines[1], want)
	}
	if strings.ContainsAny(out.String(), "\r\x1b") {
		t.Fatalf("control characters in piped progress: %q", out.String())
	}
	if got := plainLine(backfillStep("brazilsouth: Syncing 3s,", replicate.Progress{})); got != "brazilsouth: Syncing 3s, (nothing counted yet)  0.0 MiB" {
		t.Fatalf("a backfill with nothing counted: %q", got)
	}
}

// TestProgressOnATerminalIsABarEndedWhereItStands: on a terminal the bar
// library draws, and end leaves the line where it stood.
func TestProgressOnATerminalIsABarEndedWhereItStands(t *testing.T) {
	var out bytes.Buffer
	p := &progress{w: &out, terminal: true}
	p.show(step{what: "copy: 0/2 tags", done: 40 << 20, total: 40 << 20}, false) // the first tag, whole
	p.show(step{what: "copy: 1/2 tags", done: 10 << 20, total: 80 << 20}, false) // the next one starts over
	p.end()
	s := out.String()
	if !strings.Contains(s, "copy: 1/2 tags") || !strings.Contains(s, "12%") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("terminal progress %q: want the second tag's description, 12%% and a final newline", s)
	}
}

// TestProgressOnATerminalDrawsNothingWithoutATotal: a step with nothing
// to measure yet draws no bar (not a full one).
func TestProgressOnATerminalDrawsNothingWithoutATotal(t *testing.T) {
	var out bytes.Buffer
	p := &progress{w: &out, terminal: true}
	p.show(step{what: "copy: 0/2 tags", done: 7 << 20}, false)
	p.end()
	if out.Len() != 0 {
		t.Fatalf("drew %q for a step without a total", out.String())
	}
}
