// Package link is a network path between two regions, simulated in the
// application: a TCP proxy on loopback that shapes traffic (one-way
// latency, a bandwidth cap shared by every connection, as on a real link)
// and injects faults on command: stall every transfer where it is, black-
// hole the path, reset every connection, throttle, partition. The kernel of
// the machines georeg is tested on has no netem, so `georeg up` and the
// tests route replication traffic through these proxies.
//
// Faults act at once on every connection and on new ones:
//
//	Healthy    bytes flow (shaped)
//	Stall      connections stay open, no byte moves either way (a hung
//	           peer, a middlebox that stopped forwarding); new connections
//	           are accepted and stall too
//	BlackHole  as Stall, and new connections never reach the target
//	Reset      every connection is reset (RST); new ones are reset at once
//	Partition  every connection is closed; new ones are closed at once
//
// Throttle changes the bandwidth of both directions at run time.
package link

import (
	"fmt"
	"time"
)

// Shape is a simulated network path: one-way latency in each direction
// and a bandwidth cap per direction, shared by all the connections over
// it, as a real link is. Each direction of a proxied connection delivers
// every chunk latency after it was read, paced to bandwidth.
type Shape struct {
	Latency   time.Duration // one way
	Bandwidth int64         // bytes per second; 0: unlimited
}

// RTT is the link's round-trip time.
func (s Shape) RTT() time.Duration { return 2 * s.Latency }

// Fault is what a link does to its traffic now.
type Fault int

// Faults, see the package doc.
const (
	Healthy Fault = iota
	Stall
	BlackHole
	Reset
	Partition
)

var faultNames = []string{"healthy", "stall", "blackhole", "reset", "partition"}

func (f Fault) String() string {
	if int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// ParseFault reads a fault's name.
func ParseFault(s string) (Fault, error) {
	for i, n := range faultNames {
		if n == s {
			return Fault(i), nil
		}
	}
	return Healthy, fmt.Errorf("fault %q: want one of %v", s, faultNames)
}
