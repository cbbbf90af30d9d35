// Package hlc is a hybrid logical clock and the versions it stamps on tags,
// manifests and tombstones.
//
// A Version orders writes across regions: its Time packs wall-clock
// milliseconds (upper 48 bits) with a logical counter (lower 16 bits), so
// it stays close to real time yet never goes backwards in one region and
// always moves past every version the region has observed. Two versions
// with equal Time are ordered by Region name, so every region picks the
// same winner for concurrent writes (DESIGN invariant 4).
package hlc

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

const logicalBits = 16

// Version is a point in hybrid logical time, stamped by one region.
type Version struct {
	Time   int64  // (wall milliseconds << 16) | logical counter
	Region string // tie-break between equal times
}

// Less reports whether v happened before w in the total order every region
// agrees on: by Time, then by Region.
func (v Version) Less(w Version) bool {
	if v.Time != w.Time {
		return v.Time < w.Time
	}
	return v.Region < w.Region
}

// IsZero reports whether v was never set.
func (v Version) IsZero() bool { return v.Time == 0 && v.Region == "" }

// Wall returns the wall-clock part of v.
func (v Version) Wall() time.Time { return time.UnixMilli(v.Time >> logicalBits) }

// String renders v as TIME@REGION, the form ParseVersion reads.
func (v Version) String() string { return strconv.FormatInt(v.Time, 10) + "@" + v.Region }

// ParseVersion reads the form String writes.
func ParseVersion(s string) (Version, error) {
	t, region, ok := strings.Cut(s, "@")
	if !ok || region == "" {
		return Version{}, fmt.Errorf("version %q: want TIME@REGION", s)
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return Version{}, fmt.Errorf("version %q: time is not a non-negative integer", s)
	}
	return Version{Time: n, Region: region}, nil
}

// Clock issues versions for one region. It is safe for concurrent use.
type Clock struct {
	region string
	now    func() time.Time
	mu     sync.Mutex
	last   int64
}

// New returns a clock for region that reads wall time from now (time.Now
// when nil).
func New(region string, now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{region: region, now: now}
}

// Now returns a version later than every version this clock has issued or
// observed.
func (c *Clock) Now() Version {
	wall := c.now().UnixMilli() << logicalBits
	c.mu.Lock()
	defer c.mu.Unlock()
	if wall > c.last {
		c.last = wall
	} else {
		c.last++
	}
	return Version{Time: c.last, Region: c.region}
}

// Last returns the Time of the newest version this clock issued or
// observed.
func (c *Clock) Last() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Observe moves the clock past v, a version seen from another region or
// read back from storage after a restart, so the next local write orders
// after it.
func (c *Clock) Observe(v Version) {
	c.mu.Lock()
	if v.Time > c.last {
		c.last = v.Time
	}
	c.mu.Unlock()
}
