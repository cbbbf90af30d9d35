// Package cost estimates what a geo-replicated registry's transfers cost
// and what they saved, from byte counts and a price table. It decides
// nothing about I/O: the counts come from the regions (georeg usage), the
// prices from the registry's setting (georeg config prices).
package cost

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// GB is the unit prices are given per: 2^30 bytes, as cloud providers
// bill transfer.
const GB = 1 << 30

// Prices is the registry's price table, per GB of transfer. Every price
// is 0 unless set, so no estimate invents a cost.
type Prices struct {
	// Currency labels the figures (USD unless set); nothing converts.
	Currency string `json:"currency" yaml:"currency"`
	// InterRegionPerGB is the price of a GB leaving a region for another
	// region; InternetPerGB of a GB leaving a region for the internet.
	InterRegionPerGB float64 `json:"interRegionPerGB" yaml:"interRegionPerGB"`
	InternetPerGB    float64 `json:"internetPerGB" yaml:"internetPerGB"`
	// Regions overrides both, per region the bytes leave (clouds price
	// transfer by the region it leaves).
	Regions map[string]RegionPrices `json:"regions,omitempty" yaml:"regions,omitempty"`
}

// RegionPrices are one region's own prices; nil keeps the table's.
type RegionPrices struct {
	InterRegionPerGB *float64 `json:"interRegionPerGB,omitempty" yaml:"interRegionPerGB,omitempty"`
	InternetPerGB    *float64 `json:"internetPerGB,omitempty" yaml:"internetPerGB,omitempty"`
}

// WithDefaults fills the currency.
func (p Prices) WithDefaults() Prices {
	if p.Currency == "" {
		p.Currency = "USD"
	}
	return p
}

// Validate refuses negative, infinite or NaN prices and a currency that is
// not a short label.
func (p Prices) Validate() error {
	check := func(what string, v float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e6 {
			return fmt.Errorf("%s is %v: give 0 or more (per GB)", what, v)
		}
		return nil
	}
	if len(p.Currency) > 8 {
		return fmt.Errorf("currency %q: give a short label such as USD or EUR", p.Currency)
	}
	if err := errors.Join(check("interRegionPerGB", p.InterRegionPerGB), check("internetPerGB", p.InternetPerGB)); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(p.Regions)) {
		rp := p.Regions[name]
		if name == "" {
			return errors.New("a region's prices need its name")
		}
		if rp.InterRegionPerGB != nil {
			if err := check(name+".interRegionPerGB", *rp.InterRegionPerGB); err != nil {
				return err
			}
		}
		if rp.InternetPerGB != nil {
			if err := check(name+".internetPerGB", *rp.InternetPerGB); err != nil {
				return err
			}
		}
	}
	return nil
}

// InterRegion is the price per GB of leaving region for another.
func (p Prices) InterRegion(region string) float64 {
	if rp, ok := p.Regions[region]; ok && rp.InterRegionPerGB != nil {
		return *rp.InterRegionPerGB
	}
	return p.InterRegionPerGB
}

// Internet is the price per GB of leaving region for the internet.
func (p Prices) Internet(region string) float64 {
	if rp, ok := p.Regions[region]; ok && rp.InternetPerGB != nil {
		return *rp.InternetPerGB
	}
	return p.InternetPerGB
}

// Traffic is one region's counts over a window: blob bytes it served to
// clients (from its store and read through from peers together), and
// received from each peer (replication and read-through).
type Traffic struct {
	Region   string
	Served   int64
	Received map[string]int64 // by the peer the bytes came from
}

// Estimate is what the window's transfers cost, and what serving every
// pull from one region would have cost instead.
type Estimate struct {
	Currency string `json:"currency"`
	// ReplicationBytes crossed between regions (every pair; replication,
	// backfill, repairs and read-through); ReplicationCost prices each
	// pair's bytes at the inter-region price of the region they left.
	ReplicationBytes int64   `json:"replicationBytes"`
	ReplicationCost  float64 `json:"replicationCost"`
	// Home is the one region a single-region registry would have had: as
	// asked, or the region that served the most. RemotePullBytes were
	// served by the other regions: a single-region registry would have
	// sent them out of Home to clients in those regions, at Home's
	// inter-region price (SingleRegionCost).
	Home             string  `json:"home"`
	RemotePullBytes  int64   `json:"remotePullBytes"`
	SingleRegionCost float64 `json:"singleRegionCost"`
	// Saved is SingleRegionCost less ReplicationCost: negative when
	// replication cost more than it saved.
	Saved float64 `json:"saved"`
	// ServedBytes were served to clients in all; InternetCost is what they
	// cost at each region's internet price if every client was outside
	// the cloud (either design pays it, at Home's price in one region).
	ServedBytes  int64   `json:"servedBytes"`
	InternetCost float64 `json:"internetCost"`
}

// Estimated prices the window's traffic with p. home names the region a
// single-region registry would have had; "" picks the one that served the
// most (ties by name), the cheapest choice.
func Estimated(p Prices, traffic []Traffic, home string) Estimate {
	p = p.WithDefaults()
	e := Estimate{Currency: p.Currency, Home: home}
	if e.Home == "" && len(traffic) > 0 {
		e.Home = slices.MaxFunc(traffic, func(a, b Traffic) int {
			return cmp.Or(cmp.Compare(a.Served, b.Served), cmp.Compare(b.Region, a.Region))
		}).Region
	}
	gb := func(n int64) float64 { return float64(n) / GB }
	for _, t := range traffic {
		for from, n := range t.Received {
			e.ReplicationBytes += n
			e.ReplicationCost += gb(n) * p.InterRegion(from)
		}
		e.ServedBytes += t.Served
		e.InternetCost += gb(t.Served) * p.Internet(t.Region)
		if t.Region != e.Home {
			e.RemotePullBytes += t.Served
		}
	}
	e.SingleRegionCost = gb(e.RemotePullBytes) * p.InterRegion(e.Home)
	e.Saved = e.SingleRegionCost - e.ReplicationCost
	return e
}
