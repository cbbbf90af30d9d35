package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// pushRounds is how many rounds of 100 concurrent small pushes each
// contender runs in the node part. One round takes under a second, and
// on this shared machine one round's time swings by half between rounds
// of the same binary (docs/performance.md, 2026-12-06): the figure is the
// median of these rounds, interleaved between the contenders so a slow
// moment of the machine falls on all of them.
const pushRounds = 7

// smallPushesTarget is issue 22's target for 100 small pushes: at most
// this fraction of the best peer's time.
const smallPushesTarget = 0.5

// smallPushesName is the node part's small-push figure.
var smallPushesName = fmt.Sprintf("100 concurrent small pushes (median of %d, interleaved)", pushRounds)

// interleavedPushes starts every contender on a fresh directory under dir,
// all at once, and runs pushRounds rounds of 100 concurrent small pushes
// against them in turn: round r runs the contenders in an order rotated
// by r, so none always comes first. It returns one figure per contender
// (the median round), the first's note giving the per-round ratios to the
// best other contender of that round (named ref) against target.
func interleavedPushes(ctx context.Context, all []contender, dir string, target float64, ref string) ([]figure, error) {
	servers := make([]*server, len(all))
	defer func() {
		for _, s := range servers {
			if s != nil {
				s.stop()
			}
		}
	}()
	for i, c := range all {
		data := filepath.Join(dir, fmt.Sprintf("pushes-%d", i))
		defer os.RemoveAll(data)
		s, err := c.start(ctx, data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		servers[i] = s
	}
	walls := make([][]float64, len(all)) // walls[contender][round]
	fmt.Fprintf(os.Stderr, "  small pushes, %d rounds interleaved ...\n", pushRounds)
	for round := range pushRounds {
		for k := range all {
			i := (k + round) % len(all)
			w, err := pushRound(ctx, servers[i], "bench/push", 0, round)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", all[i].name, err)
			}
			walls[i] = append(walls[i], w)
		}
	}
	figs := make([]figure, len(all))
	for i := range all {
		figs[i] = figure{name: smallPushesName, value: median(walls[i]), unit: "s", ratioTarget: target,
			note: fmt.Sprintf("rounds %.3f-%.3f s", slices.Min(walls[i]), slices.Max(walls[i]))}
	}
	if len(all) > 1 {
		figs[0].note += "; " + roundRatios(walls, target, ref)
	}
	return figs, nil
}

// roundRatios describes the first contender's time over the best other's
// (named ref), round by round, against target: the ratio's own spread,
// beside the ratio of medians the table reports.
func roundRatios(walls [][]float64, target float64, ref string) string {
	var ratios []float64
	for r := range walls[0] {
		best := 0.0
		for _, w := range walls[1:] {
			if r < len(w) && (best == 0 || w[r] < best) {
				best = w[r]
			}
		}
		if best > 0 {
			ratios = append(ratios, walls[0][r]/best)
		}
	}
	if len(ratios) == 0 {
		return ""
	}
	met := 0
	for _, x := range ratios {
		if x <= target {
			met++
		}
	}
	return fmt.Sprintf("per round / %s of that round: median %.2fx, %.2f-%.2fx, <= %.1fx in %d of %d",
		ref, median(ratios), slices.Min(ratios), slices.Max(ratios), target, met, len(ratios))
}

// median returns the middle value of xs (the mean of the two middle ones
// for an even count); xs is not changed.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// smallPushes runs three rounds of 100 concurrent pushes of small images
// against one server and returns the median round's time in seconds.
func smallPushes(ctx context.Context, s *server, prefix string, seed int) (float64, error) {
	var walls []float64
	for round := range 3 {
		w, err := pushRound(ctx, s, prefix, seed, round)
		if err != nil {
			return 0, err
		}
		walls = append(walls, w)
	}
	return median(walls), nil
}

// pushRound pushes 100 small images at once (repositories prefix0 to
// prefix99, tag r<round>, content from seed+round*1000+i) and returns the
// time until the last was acknowledged, in seconds.
func pushRound(ctx context.Context, s *server, prefix string, seed, round int) (float64, error) {
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 100)
	for i := range 100 {
		wg.Go(func() {
			errs[i] = pushImage(ctx, s, fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("r%d", round), seed+round*1000+i)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return time.Since(t0).Seconds(), nil
}
