package replicate

import "sync"

// applyWindow follows the records of one peer's feed that a follower
// applies side by side (applyPages): the order they were taken in, which
// of them are done (applied, or parked), and the prefix of the feed all of
// whose records are done. A peer's cursor, durable in the store, must never
// pass a record that is not done (a restart goes on from it), so a record's
// apply moves it only as far as through says. It is a pure record of
// facts: the follower tells it what it took and finished, and asks it.
type applyWindow struct {
	mu      sync.Mutex
	taken   []int64        // taken, not yet in the prefix, in feed order (the first is not done)
	done    map[int64]bool // which of taken are done
	prefix  int64          // every record taken up to it is done (0: none yet)
	written int64          // the furthest cursor a committed write set
	// progress is signalled when the first record not done finishes.
	progress chan struct{}
}

func newApplyWindow() *applyWindow {
	return &applyWindow{done: map[int64]bool{}, progress: make(chan struct{}, 1)}
}

// take records that record seq, after every record taken before it in
// the feed, is being applied.
func (w *applyWindow) take(seq int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.taken = append(w.taken, seq)
}

// ahead is how many records are taken past the prefix.
func (w *applyWindow) ahead() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.taken)
}

// through is how far the apply of record seq may move the cursor, were it
// to commit now: past seq, and past the records after it already done,
// when every record taken before it is done; else to the prefix only (a
// record before it may still fail, and would be lost to a restart).
func (w *applyWindow) through(seq int64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.taken) == 0 || w.taken[0] != seq {
		return w.prefix
	}
	t := seq
	for _, next := range w.taken[1:] {
		if !w.done[next] {
			break
		}
		t = next
	}
	return t
}

// finish records that record seq is done, committed (applied, or parked,
// with the cursor each moved: wrote), and returns the prefix and whether
// the cursor's durable value is behind it with nothing else taken, so no
// apply still to come would move it: the caller writes it then.
func (w *applyWindow) finish(seq, wrote int64) (prefix int64, behind bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.written = max(w.written, wrote)
	w.done[seq] = true
	moved := false
	for len(w.taken) > 0 && w.done[w.taken[0]] {
		w.prefix = w.taken[0]
		delete(w.done, w.taken[0])
		w.taken = w.taken[1:]
		moved = true
	}
	if moved {
		select {
		case w.progress <- struct{}{}:
		default:
		}
	}
	return w.prefix, len(w.taken) == 0 && w.written < w.prefix
}

// wrote records a cursor a committed write set.
func (w *applyWindow) wrote(cursor int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.written = max(w.written, cursor)
}
