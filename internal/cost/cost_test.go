package cost

import (
	"math"
	"strings"
	"testing"
)

func ptr(v float64) *float64 { return &v }

func TestEstimated(t *testing.T) {
	prices := Prices{InterRegionPerGB: 0.02, InternetPerGB: 0.09,
		Regions: map[string]RegionPrices{"asia": {InterRegionPerGB: ptr(0.08)}}}
	three := []Traffic{
		{Region: "eu", Served: 10 * GB, Received: map[string]int64{"us": 2 * GB}},
		{Region: "us", Served: 30 * GB, Received: map[string]int64{"eu": 1 * GB}},
		{Region: "asia", Served: 5 * GB, Received: map[string]int64{"us": 2 * GB, "eu": 1 * GB}},
	}
	for _, tc := range []struct {
		name     string
		prices   Prices
		traffic  []Traffic
		home     string
		want     Estimate
		currency string
	}{
		{
			name: "no prices: every cost 0, the bytes still counted", traffic: three,
			want: Estimate{Currency: "USD", Home: "us", ReplicationBytes: 6 * GB, RemotePullBytes: 15 * GB, ServedBytes: 45 * GB},
		},
		{
			name: "home picked: the region that served the most", prices: prices, traffic: three,
			// replication: 5 GB from us and eu at 0.02; single region:
			// 15 GB out of us at 0.02; internet: 45 GB at 0.09.
			want: Estimate{Currency: "USD", Home: "us", ReplicationBytes: 6 * GB, ReplicationCost: 0.12,
				RemotePullBytes: 15 * GB, SingleRegionCost: 0.30, Saved: 0.18, ServedBytes: 45 * GB, InternetCost: 4.05},
		},
		{
			name: "home asked: its own price applies to the pulls it would serve", prices: prices, traffic: three, home: "asia",
			want: Estimate{Currency: "USD", Home: "asia", ReplicationBytes: 6 * GB, ReplicationCost: 0.12,
				RemotePullBytes: 40 * GB, SingleRegionCost: 3.20, Saved: 3.08, ServedBytes: 45 * GB, InternetCost: 4.05},
		},
		{
			name: "bytes leaving a region at its own price", prices: prices,
			traffic: []Traffic{{Region: "eu", Received: map[string]int64{"asia": 1 * GB}}, {Region: "asia", Served: 1 * GB}},
			want: Estimate{Currency: "USD", Home: "asia", ReplicationBytes: GB, ReplicationCost: 0.08,
				Saved: -0.08, ServedBytes: GB, InternetCost: 0.09},
		},
		{
			name: "a tie picks by name", traffic: []Traffic{{Region: "b", Served: 1}, {Region: "a", Served: 1}},
			want: Estimate{Currency: "USD", Home: "a", RemotePullBytes: 1, ServedBytes: 2},
		},
		{name: "nothing", want: Estimate{Currency: "USD"}},
		{
			name: "currency kept", prices: Prices{Currency: "EUR"},
			want: Estimate{Currency: "EUR"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Estimated(tc.prices, tc.traffic, tc.home)
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
			money := [][2]float64{{got.ReplicationCost, tc.want.ReplicationCost}, {got.SingleRegionCost, tc.want.SingleRegionCost},
				{got.Saved, tc.want.Saved}, {got.InternetCost, tc.want.InternetCost}}
			for _, m := range money {
				if !near(m[0], m[1]) {
					t.Fatalf("got %+v\nwant %+v", got, tc.want)
				}
			}
			got.ReplicationCost, got.SingleRegionCost, got.Saved, got.InternetCost = tc.want.ReplicationCost, tc.want.SingleRegionCost, tc.want.Saved, tc.want.InternetCost
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestPricesValidate(t *testing.T) {
	for _, tc := range []struct {
		p    Prices
		want string // "" valid
	}{
		{Prices{}, ""},
		{Prices{Currency: "EUR", InterRegionPerGB: 0.02, InternetPerGB: 0.087, Regions: map[string]RegionPrices{"eu": {InternetPerGB: ptr(0)}}}, ""},
		{Prices{InterRegionPerGB: -1}, "interRegionPerGB is -1"},
		{Prices{InternetPerGB: math.NaN()}, "internetPerGB is NaN"},
		{Prices{InternetPerGB: math.Inf(1)}, "internetPerGB is +Inf"},
		{Prices{Regions: map[string]RegionPrices{"eu": {InterRegionPerGB: ptr(-0.5)}}}, "eu.interRegionPerGB"},
		{Prices{Regions: map[string]RegionPrices{"": {}}}, "need its name"},
		{Prices{Currency: "US dollars please"}, "short label"},
	} {
		err := tc.p.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.p, err, tc.want)
		}
	}
}

func TestRegionPricesOverrideTheTables(t *testing.T) {
	p := Prices{InterRegionPerGB: 0.02, InternetPerGB: 0.09, Regions: map[string]RegionPrices{
		"free": {InterRegionPerGB: ptr(0), InternetPerGB: ptr(0)}, "half": {InternetPerGB: ptr(0.05)}}}
	if p.InterRegion("free") != 0 || p.Internet("free") != 0 || p.InterRegion("half") != 0.02 || p.Internet("half") != 0.05 || p.InterRegion("other") != 0.02 {
		t.Fatal("per-region prices not applied as set")
	}
}
