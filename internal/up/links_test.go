package up

import (
	"reflect"
	"testing"
)

func TestChosenLinksAreThoseOfTheRegionOrOfThePair(t *testing.T) {
	pairs := [][2]string{
		{"eastus", "westeurope"}, {"westeurope", "eastus"},
		{"eastus", "southeastasia"}, {"southeastasia", "eastus"},
		{"westeurope", "southeastasia"}, {"southeastasia", "westeurope"},
	}
	for _, c := range []struct {
		region, to string
		want       [][2]string
		fails      bool
	}{
		{region: "westeurope", want: [][2]string{{"eastus", "westeurope"}, {"southeastasia", "westeurope"}, {"westeurope", "eastus"}, {"westeurope", "southeastasia"}}},
		{region: "eastus", to: "westeurope", want: [][2]string{{"eastus", "westeurope"}, {"westeurope", "eastus"}}},
		{region: "westeurope", to: "eastus", want: [][2]string{{"eastus", "westeurope"}, {"westeurope", "eastus"}}},
		{region: "mars", fails: true},
		{region: "eastus", to: "mars", fails: true},
		{region: "eastus", to: "eastus", fails: true},
		{region: "", fails: true},
	} {
		got, err := chosenLinks(pairs, c.region, c.to)
		if (err != nil) != c.fails {
			t.Errorf("%s -> %s: error %v, want failure %v", c.region, c.to, err, c.fails)
			continue
		}
		if !c.fails && !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s -> %s: %v, want %v", c.region, c.to, got, c.want)
		}
	}
	if got, err := chosenLinks(nil, "eastus", ""); err == nil {
		t.Errorf("no links at all: %v, want an error saying so", got)
	}
}
