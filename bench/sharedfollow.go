package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// benchSharedFollow measures a region on shared stores (one node on
// PostgreSQL and S3, region bench) that follows a peer while it takes
// pushes of its own: region east (a `georeg serve` on local storage)
// and bench replicate with each other. Bench takes three rounds of 100
// small pushes alone, then three more while east takes as many at the
// same time, which bench replicates (and east bench's). It reports
// bench's pushes/s alone and while following, its node's CPU per image,
// and how long after east's last push bench held all of east's images,
// then the same with bench only following.
func benchSharedFollow(ctx context.Context, bin, dir, logLevel string) ([]row, error) {
	stores, err := newSharedStores(ctx)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	benchAddr, eastAddr := freeAddr(), freeAddr()
	repl := func(peer, addr string) string {
		return fmt.Sprintf("replication:\n  secret: bench\n  peers:\n    - name: %s\n      endpoint: http://%s\n", peer, addr)
	}
	b, err := startSharedRegionNode(ctx, bin, filepath.Join(dir, "bench"), logLevel, stores, "bench-1", benchAddr, repl("east", eastAddr))
	if err != nil {
		return nil, err
	}
	defer b.stop()
	eastCfg := fmt.Sprintf("region:\n  name: east\n  dataDir: %s\nhttp:\n  listen: %s\n%slog:\n  level: %s\n",
		filepath.Join(dir, "east"), eastAddr, repl("bench", benchAddr), logLevel)
	file := filepath.Join(dir, "east.yaml")
	if err := os.WriteFile(file, []byte(eastCfg), 0o644); err != nil {
		return nil, err
	}
	ep, err := startProc(ctx, bin, filepath.Join(dir, "east.log"), eastAddr, "serve", "--config", file)
	if err != nil {
		return nil, err
	}
	e := ep.server()
	defer e.stop()

	cpu0 := b.cpuSeconds()
	alone, err := smallPushes(ctx, b, "bench/alone", 60_000)
	if err != nil {
		return nil, err
	}
	cpuAlone := (b.cpuSeconds() - cpu0) / 300

	// East's rounds, and then the wait for bench to hold them, run beside
	// bench's own rounds.
	var wg sync.WaitGroup
	var eastErr error
	var eastDone, caughtUp time.Time
	cpu1 := b.cpuSeconds()
	wg.Go(func() {
		if _, eastErr = smallPushes(ctx, e, "east/p", 70_000); eastErr != nil {
			return
		}
		eastDone = time.Now()
		caughtUp, eastErr = heldEverywhere(ctx, b, "east/p", eastDone.Add(2*time.Minute))
	})
	following, err := smallPushes(ctx, b, "bench/following", 80_000)
	wg.Wait()
	if err = errors.Join(err, eastErr); err != nil {
		return nil, err
	}
	lag := caughtUp.Sub(eastDone)
	cpuFollowing := (b.cpuSeconds() - cpu1) / 600 // its 300 pushes and east's 300 applied

	// East's rounds again, bench taking none of its own: how fast the
	// follower catches up with nothing else to do.
	if _, err := smallPushes(ctx, e, "east/q", 90_000); err != nil {
		return nil, err
	}
	quietDone := time.Now()
	quietCaught, err := heldEverywhere(ctx, b, "east/q", quietDone.Add(2*time.Minute))
	if err != nil {
		return nil, err
	}

	// The same follow between two regions on local storage, for scale:
	// east2 takes the three rounds, west only follows.
	fsCatchUp, err := fsFollowerCatchUp(ctx, bin, filepath.Join(dir, "fs"), logLevel)
	if err != nil {
		return nil, err
	}

	return []row{
		{"shared region following a peer: its small pushes alone", fmt.Sprintf("%.0f /s", 100/alone), "", fmt.Sprintf("the node's %.1f ms CPU per push", cpuAlone*1000)},
		{"shared region following a peer: its small pushes while following", fmt.Sprintf("%.0f /s", 100/following), "",
			fmt.Sprintf("%.2fx alone, while the peer took 100 at once in each round; the node's %.1f ms CPU per image (its own pushed, the peer's applied, its own served to the peer)", alone/following, cpuFollowing*1000)},
		{"shared region following a peer: held the peer's 300 images", fmt.Sprintf("%s after its last push", lag.Round(time.Millisecond)), "", "every manifest of the peer's rounds answered 200 here"},
		{"shared region following a peer: held them, taking no pushes of its own", fmt.Sprintf("%s after its last push", quietCaught.Sub(quietDone).Round(time.Millisecond)), "",
			fmt.Sprintf("the peer's three rounds again, the region only following; a region on local storage following the same: %s", fsCatchUp.Round(time.Millisecond))},
	}, nil
}

// heldEverywhere waits until s answers every image of smallPushes's three
// rounds under prefix (repositories prefix0..99, tags r0..r2), polling
// (waitFor) until deadline, and returns when it did.
func heldEverywhere(ctx context.Context, s *server, prefix string, deadline time.Time) (time.Time, error) {
	missing := map[string]bool{}
	for i := range 100 {
		for round := range 3 {
			missing[fmt.Sprintf("/v2/%s%d/manifests/r%d", prefix, i, round)] = true
		}
	}
	client := &http.Client{Timeout: 5 * time.Second} // bounded: a region that stops answering
	err := waitFor(ctx, time.Until(deadline), func() error {
		for path := range missing {
			req, _ := http.NewRequestWithContext(ctx, http.MethodHead, s.base+path, nil)
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				delete(missing, path)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the shared region still lacked %d of the peer's 300 images", len(missing))
		}
		return nil
	})
	return time.Now(), err
}

// fsFollowerCatchUp starts two regions on local storage, east2 and west,
// each the other's peer, has east2 take smallPushes's three rounds, and
// returns how long after its last push west held every image.
func fsFollowerCatchUp(ctx context.Context, bin, dir, logLevel string) (time.Duration, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	rs, err := startMesh(ctx, bin, dir, []string{"east2", "west"}, []string{freeAddr(), freeAddr()}, []int{0, 1}, []int{0, 1})
	defer func() {
		for _, r := range rs {
			r.p.server().stop()
		}
	}()
	if err != nil {
		return 0, err
	}
	if _, err := smallPushes(ctx, rs[0].p.server(), "east2/p", 95_000); err != nil {
		return 0, err
	}
	done := time.Now()
	caught, err := heldEverywhere(ctx, rs[1].p.server(), "east2/p", done.Add(2*time.Minute))
	if err != nil {
		return 0, err
	}
	return caught.Sub(done), nil
}
