package replicate

import (
	"errors"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/meta"
)

// TestTheFeedIsCompactedOnlyPastWhatEveryRegionWithinTheHorizonApplied:
// the floor is the lowest mark of the regions that applied any of the
// feed within the horizon; a region with no mark holds everything; a
// region away longer than the horizon holds nothing back.
func TestTheFeedIsCompactedOnlyPastWhatEveryRegionWithinTheHorizonApplied(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	const horizon = time.Hour
	mark := func(seq int64, ago time.Duration) meta.AppliedMark {
		return meta.AppliedMark{Seq: seq, Updated: now.Add(-ago)}
	}
	for _, c := range []struct {
		name    string
		members []string
		marks   map[string]map[string]meta.AppliedMark
		want    int64
	}{
		{"alone: nothing", []string{"eastus"}, nil, 0},
		{"the lowest mark", []string{"eastus", "westeurope", "asia"},
			map[string]map[string]meta.AppliedMark{"westeurope": {"eastus": mark(40, time.Minute)}, "asia": {"eastus": mark(25, time.Second)}}, 25},
		{"a member with no mark holds everything", []string{"eastus", "westeurope", "asia"},
			map[string]map[string]meta.AppliedMark{"westeurope": {"eastus": mark(40, time.Minute)}}, 0},
		{"a mark of another origin is not one of this feed", []string{"eastus", "westeurope"},
			map[string]map[string]meta.AppliedMark{"westeurope": {"asia": mark(40, time.Minute)}}, 0},
		{"away longer than the horizon holds nothing back", []string{"eastus", "westeurope", "asia"},
			map[string]map[string]meta.AppliedMark{"westeurope": {"eastus": mark(40, time.Minute)}, "asia": {"eastus": mark(3, 2*time.Hour)}}, 40},
		{"just within the horizon still holds", []string{"eastus", "westeurope", "asia"},
			map[string]map[string]meta.AppliedMark{"westeurope": {"eastus": mark(40, time.Minute)}, "asia": {"eastus": mark(3, horizon)}}, 3},
	} {
		if got := compactionFloor("eastus", c.members, c.marks, now, horizon); got != c.want {
			t.Errorf("%s: floor %d, want %d", c.name, got, c.want)
		}
	}
}

func TestARejoinMovesOnPastABrokenRepositoryAndWaitsForBusyOnes(t *testing.T) {
	broken := errors.New("repo a: blob unknown")
	for _, c := range []struct {
		name  string
		try   int
		round Round
		err   error
		want  rejoinStep
	}{
		{"all repaired", 1, Round{Differed: 2, Repos: []string{"a", "b"}}, nil, rejoinMove},
		{"nothing differed", 1, Round{}, nil, rejoinMove},
		{"the summaries could not be read", 1, Round{}, errors.New("connection refused"), rejoinFail},
		{"the settings could not be read", 1, Round{Settings: true, Differed: 1}, errors.New("settings: 503"), rejoinFail},
		{"one repository failed", 1, Round{Differed: 2, Repos: []string{"a", "b"}, Failed: []string{"a"}}, broken, rejoinMove},
		{"a busy repository, first try", 1, Round{Busy: []string{"c"}}, nil, rejoinAgain},
		{"a busy repository and a failed one", 3, Round{Busy: []string{"c"}, Failed: []string{"a"}}, broken, rejoinAgain},
		{"still busy after every try", rejoinBusyTries, Round{Busy: []string{"c"}}, nil, rejoinMove},
	} {
		if got := rejoinNext(c.try, c.round, c.err); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
