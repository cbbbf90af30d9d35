package replicate

import "testing"

// TestTheCursorMovesOnlyOverRecordsAllDone: records taken in feed order
// finish in any order; an apply moves the cursor past its record only when
// every record taken before it is done (and then past the done ones after
// it too), and the caller is told to write the cursor itself when the
// last apply left it behind what is done.
func TestTheCursorMovesOnlyOverRecordsAllDone(t *testing.T) {
	type step struct {
		finish      int64 // record done, its apply having moved the cursor to through(finish) asked before
		through     int64 // what through(finish) said when its apply started
		prefix      int64
		writeBehind bool
	}
	for _, c := range []struct {
		name  string
		taken []int64
		steps []step
	}{
		{"in order, each its own cursor", []int64{5, 6, 7}, []step{
			{5, 5, 5, false}, {6, 6, 6, false}, {7, 7, 7, false}}},
		{"a later record first: the cursor stays before the earlier", []int64{5, 6, 7}, []step{
			{7, 0, 0, false}, {6, 0, 0, false}, {5, 7, 7, false}}},
		{"the earlier finishes last, having asked before the others finished", []int64{5, 6, 7}, []step{
			{5, 5, 5, false}, {7, 5, 5, false}, {6, 7, 7, false}}},
		{"gaps in the numbers (a feed compacted, or records of no interest)", []int64{10, 40, 41}, []step{
			{41, 0, 0, false}, {10, 10, 10, false}, {40, 41, 41, false}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newApplyWindow()
			for _, s := range c.taken {
				w.take(s)
			}
			for i, s := range c.steps {
				through := w.through(s.finish)
				if through != s.through {
					t.Fatalf("step %d: through(%d) = %d, want %d", i, s.finish, through, s.through)
				}
				prefix, behind := w.finish(s.finish, through)
				if prefix != s.prefix || behind != s.writeBehind {
					t.Fatalf("step %d: finish(%d) = %d, %v; want %d, %v", i, s.finish, prefix, behind, s.prefix, s.writeBehind)
				}
			}
			if w.ahead() != 0 {
				t.Fatalf("%d records still ahead", w.ahead())
			}
		})
	}
}

// TestTheLastApplyToFinishHavingMovedTheCursorShortTheCallerWritesIt:
// record 5 asked how far to move the cursor before 6 finished; once both
// are done and nothing else is taken, the caller is told to move it over
// 6, and only then.
func TestTheLastApplyToFinishHavingMovedTheCursorShortTheCallerWritesIt(t *testing.T) {
	w := newApplyWindow()
	w.take(5)
	w.take(6)
	through5 := w.through(5)
	if p, behind := w.finish(6, w.through(6)); p != 0 || behind {
		t.Fatalf("6 done before 5: prefix %d, write %v", p, behind)
	}
	if p, behind := w.finish(5, through5); p != 6 || !behind {
		t.Fatalf("5 done, having moved the cursor to %d: prefix %d, write %v; want 6, true", through5, p, behind)
	}
	w.wrote(6)
	w.take(7)
	if p, behind := w.finish(7, w.through(7)); p != 7 || behind {
		t.Fatalf("7 alone: prefix %d, write %v", p, behind)
	}
}

// TestAParkedRecordsLaterApplyMovesTheCursorNoFurtherThanThePrefix: a
// record parked is done for the window; its apply later (runParked) asks
// through for a record no longer taken and gets the prefix, never its own
// number past records still being applied.
func TestAParkedRecordsLaterApplyMovesTheCursorNoFurtherThanThePrefix(t *testing.T) {
	w := newApplyWindow()
	for _, s := range []int64{1, 2, 3} {
		w.take(s)
	}
	if p, _ := w.finish(1, w.through(1)); p != 1 {
		t.Fatalf("prefix %d after 1", p)
	}
	if p, _ := w.finish(3, w.through(3)); p != 1 { // parked, 2 still applying
		t.Fatalf("prefix %d after 3 parked", p)
	}
	if got := w.through(3); got != 1 {
		t.Fatalf("the parked record 3 applied later would move the cursor to %d, past 2 (still applying)", got)
	}
}
