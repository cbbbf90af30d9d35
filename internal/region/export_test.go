package region

import (
	"sync"
	"time"
)

// TestClock is a clock a test moves by hand: the region's notion of now
// (link dates, the garbage collector's grace period), so a test waits for
// nothing to age.
type TestClock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the clock's time.
func (c *TestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *TestClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// UseTestClock makes r read its time from a TestClock starting at the
// wall clock's now (whole milliseconds), and returns it. Call it before r serves anything.
func UseTestClock(r *Region) *TestClock {
	c := &TestClock{now: time.Now().Truncate(time.Millisecond)} // as dates are stored: a test can land on a bound exactly
	r.now = c.Now
	return c
}
