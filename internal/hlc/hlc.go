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
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

const logicalBits = 16

// maxTime is the largest Time a version may have (wall milliseconds
// around the year 4200): far from where a clock that moves past it would
// overflow int64.
const maxTime = 1 << 62

// DefaultMaxDrift is how far ahead of this region's clock a version from
// another region may be (Clock.Admit).
const DefaultMaxDrift = 5 * time.Minute

// ErrFuture is a version further ahead than the clock admits.
var ErrFuture = errors.New("a version too far in the future")

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

// TimeAt returns the smallest version time at wall time t: every version
// stamped at t or later has a Time at least this.
func TimeAt(t time.Time) int64 { return t.UnixMilli() << logicalBits }

// String renders v as TIME@REGION, the form ParseVersion reads.
func (v Version) String() string { return strconv.FormatInt(v.Time, 10) + "@" + v.Region }

// ParseVersion reads the form String writes.
func ParseVersion(s string) (Version, error) {
	t, region, ok := strings.Cut(s, "@")
	if !ok || region == "" {
		return Version{}, fmt.Errorf("version %q: want TIME@REGION", s)
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > maxTime {
		return Version{}, fmt.Errorf("version %q: time is not an integer from 0 to 2^62", s)
	}
	return Version{Time: n, Region: region}, nil
}

// Clock issues versions for one region. It is safe for concurrent use.
type Clock struct {
	region   string
	now      func() time.Time
	maxDrift time.Duration
	mu       sync.Mutex
	last     int64
}

// New returns a clock for region that reads wall time from now (time.Now
// when nil).
func New(region string, now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{region: region, now: now, maxDrift: DefaultMaxDrift}
}

// SetMaxDrift sets how far ahead of this clock Admit lets a version be
// (DefaultMaxDrift when d is zero).
func (c *Clock) SetMaxDrift(d time.Duration) {
	if d == 0 {
		d = DefaultMaxDrift
	}
	c.mu.Lock()
	c.maxDrift = d
	c.mu.Unlock()
}

// Admit observes v, a version from another region, unless its wall time is
// more than the clock's max drift ahead of this clock's: a peer whose
// clock runs far ahead, or that sends a forged version, would otherwise
// push every later write of this region past it (and a version near 2^63
// would leave no room after it). Such a version is refused with ErrFuture;
// once real time has come within the drift, the same version is admitted.
func (c *Clock) Admit(v Version) error {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := now.Add(c.maxDrift)
	if v.Time > maxTime || v.Wall().After(limit) {
		return fmt.Errorf("%w: %s is %s ahead of region %s's clock, more than the %s allowed (replication.maxClockDrift): check region %s's clock (NTP)",
			ErrFuture, v, v.Wall().Sub(now).Round(time.Second), c.region, c.maxDrift, v.Region)
	}
	if v.Time > c.last {
		c.last = v.Time
	}
	return nil
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
