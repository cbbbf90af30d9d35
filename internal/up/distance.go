package up

import (
	"time"

	"github.com/georeg/georeg/internal/link"
)

// DefaultDistance is the distance `georeg up` simulates between its three
// regions, roughly as between Virginia, the Netherlands and Singapore:
// one-way latency and 100 MB/s each way.
func DefaultDistance(a, b string) (link.Shape, bool) {
	oneWay := map[[2]string]time.Duration{
		{"eastus", "westeurope"}:        40 * time.Millisecond,
		{"westeurope", "southeastasia"}: 80 * time.Millisecond,
		{"eastus", "southeastasia"}:     110 * time.Millisecond,
	}
	d, ok := oneWay[[2]string{a, b}]
	if !ok {
		d, ok = oneWay[[2]string{b, a}]
	}
	return link.Shape{Latency: d, Bandwidth: 100_000_000}, ok
}

// Links returns a distance function that puts a link of shape s between
// every pair of regions: with a zero s, links that add nothing but can
// take faults (Registry.Link).
func Links(s link.Shape) func(a, b string) (link.Shape, bool) {
	return func(string, string) (link.Shape, bool) { return s, true }
}
