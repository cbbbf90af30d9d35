package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress shows how far a long operation (create --wait, import, copy)
// has come, on stderr: on a terminal a bar (schollz/progressbar) redrawn
// in place; otherwise one plain line every 5 s and the final one, so a CI
// log stays readable.
type progress struct {
	w        io.Writer
	terminal bool
	bar      *progressbar.ProgressBar
	barMax   int64
	last     time.Time // when a plain line was last printed
}

func newProgress() *progress {
	return &progress{w: os.Stderr, terminal: isTerminal(os.Stderr)}
}

// step is how far an operation has come: bytes of a known total, and a
// description (what, and counts of objects).
type step struct {
	what        string
	done, total int64 // bytes; total 0: not known yet
}

// show draws s (off a terminal: only 5 s after the last line, or when
// final).
func (p *progress) show(s step, final bool) {
	if p.terminal {
		if s.total <= 0 { // nothing to measure yet: keep the bar as it stands
			if p.bar != nil {
				p.bar.Describe(s.what)
			}
			return
		}
		if p.bar == nil || p.barMax != max(s.total, 1) {
			if p.bar == nil {
				p.bar = progressbar.NewOptions64(max(s.total, 1), progressbar.OptionSetWriter(p.w),
					progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30), progressbar.OptionSetPredictTime(true))
			} else { // a new total (the next tag of a copy, say): the bar starts over
				p.bar.Reset()
				p.bar.ChangeMax64(max(s.total, 1))
			}
			p.barMax = max(s.total, 1)
		}
		p.bar.Describe(s.what)
		_ = p.bar.Set64(min(s.done, p.barMax))
		return
	}
	if !final && time.Since(p.last) < 5*time.Second {
		return
	}
	fmt.Fprintln(p.w, plainLine(s))
	p.last = time.Now()
}

// plainLine is a step as one line of text.
func plainLine(s step) string {
	if s.total <= 0 {
		return fmt.Sprintf("%s  %s", s.what, mib(s.done))
	}
	return fmt.Sprintf("%s  %5.1f%%  %s/%s", s.what, 100*float64(s.done)/float64(s.total), mib(s.done), mib(s.total))
}

// end ends the bar on a terminal, where it stands.
func (p *progress) end() {
	if p.bar != nil {
		_ = p.bar.Exit()
		fmt.Fprintln(p.w)
		p.bar = nil
	}
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
