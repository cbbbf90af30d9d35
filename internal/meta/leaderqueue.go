package meta

import "sync"

// leaderQueue is work that waits for one goroutine to take it in groups
// (a node's writes, batch.go; its blob leases, bloblease.go). The caller
// that finds nobody leading starts the leader, which takes groups until
// the queue is empty, so no caller waits for others' work after its own
// is done.
type leaderQueue[T any] struct {
	mu      sync.Mutex
	items   []T
	leading bool
}

// add queues t and reports whether the caller must start the leader.
func (q *leaderQueue[T]) add(t T) (lead bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, t)
	lead = !q.leading
	q.leading = true
	return lead
}

// take returns up to n items, in the order they came, for the leader;
// none when the queue is empty, and the leader then stops (the next add
// starts another).
func (q *leaderQueue[T]) take(n int) []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(len(q.items), n)
	if n == 0 {
		q.leading = false
		return nil
	}
	out := q.items[:n:n]
	q.items = q.items[n:]
	return out
}

// putBack returns items the leader took but did not run to the head of
// the queue: they go first in its next group.
func (q *leaderQueue[T]) putBack(items []T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(items, q.items...)
}

// waiting is how many items wait.
func (q *leaderQueue[T]) waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
