package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/cache"
	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/up"
)

// benchCache measures the artifact cache (docs/cache.md) against issue
// 18's targets. The upstream is a one-region georeg registry reached over
// a simulated internet link (40 ms one way, 100 MB/s); the cache is a
// three-region registry at the default simulated distance, with one rule
// (bench/* -> hub/*). A client next to eastus pulls whole images
// (manifest, config, layer):
//
//   - a cold pull through the cache, against a direct pull of another
//     image of the same size from the upstream across the same link;
//   - the cold manifest GET's time to first byte (the cache stores the
//     image before it serves it: the whole fetch);
//   - a warm pull through the cache, against a pull of an image of the
//     same size pushed to eastus itself;
//   - the bytes the upstream sent for one image pulled in all three
//     regions, counted on the link.
func benchCache(ctx context.Context, dir string, quick bool) ([]row, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	src, err := up.Start(ctx, up.Config{DataDir: filepath.Join(dir, "cache-upstream"),
		Regions: []up.RegionSpec{{Name: "upstream", Listen: "127.0.0.1:0"}}}, discard)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); _ = src.Wait() }()
	upstream := &server{base: src.ByName["upstream"].URL}
	shape := link.Shape{Latency: 40 * time.Millisecond, Bandwidth: 100_000_000}
	proxy, err := link.Start(ctx, strings.TrimPrefix(upstream.base, "http://"), shape)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); proxy.Wait() }()
	far := "http://" + proxy.Addr()
	reg, err := up.Start(ctx, up.Config{DataDir: filepath.Join(dir, "cache-reg"), Distance: up.DefaultDistance,
		Regions: []up.RegionSpec{{Name: "eastus", Listen: "127.0.0.1:0"}, {Name: "westeurope", Listen: "127.0.0.1:0"}, {Name: "southeastasia", Listen: "127.0.0.1:0"}}}, discard)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); _ = reg.Wait() }()
	east := reg.ByName["eastus"].URL
	var regionNames []string
	for _, r := range reg.Regions {
		regionNames = append(regionNames, r.Name)
	}
	rule := fmt.Sprintf(`{"source":"%s/bench/*","target":"hub/*"}`, far)
	if err := putJSON(ctx, east+"/_georeg/v1/cache-rules/bench", rule); err != nil {
		return nil, err
	}
	for _, r := range reg.Regions { // every region has the rule
		if err := waitFor(ctx, 30*time.Second, func() error { return getOK(ctx, r.URL+"/_georeg/v1/cache-rules/bench") }); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Name, err)
		}
	}

	sizes := []int64{10 << 20, 100 << 20}
	if quick {
		sizes = []int64{1 << 20}
	}
	var rows []row
	seed := 950_000
	for _, size := range sizes {
		label := sizeLabel(size)
		// fetchedBy != "": a tag whose image that region fetches for the
		// registry (cache.Fetcher), "" any.
		next := func(repo string, s *server, fetchedBy ...string) (string, []digest.Digest, int64, error) {
			seed++
			for i := 0; len(fetchedBy) > 0 && i < 100 && cache.Fetcher(regionNames, "hub/app|"+fmt.Sprintf("t%d", seed)) != fetchedBy[0]; i++ {
				seed++
			}
			tag := fmt.Sprintf("t%d", seed)
			layer, cfg, err := pushSized(ctx, s, repo, tag, seed, size)
			return tag, []digest.Digest{cfg, layer}, size + int64(len(fmt.Sprintf(`{"readthrough":%d}`, seed))), err
		}
		// Direct from the upstream, across the link.
		tag, blobs, _, err := next("bench/direct", upstream)
		if err != nil {
			return nil, err
		}
		_, _, direct, err := pullImage(ctx, far, "bench/direct", tag, blobs)
		if err != nil {
			return nil, err
		}
		// Cold through the cache, in eastus, which fetches it for the
		// registry; then the same image pulled in the two other regions,
		// counting what the upstream sent.
		tag, blobs, imageBytes, err := next("bench/app", upstream, "eastus")
		if err != nil {
			return nil, err
		}
		_, before := proxy.Delivered()
		first, layerFirst, cold, err := pullImage(ctx, east, "hub/app", tag, blobs)
		if err != nil {
			return nil, fmt.Errorf("cold pull through the cache: %w", err)
		}
		for _, r := range reg.Regions[1:] {
			if _, _, _, err := pullImage(ctx, r.URL, "hub/app", tag, blobs); err != nil {
				return nil, fmt.Errorf("pull through the cache in %s: %w", r.Name, err)
			}
		}
		_, after := proxy.Delivered()
		// Cold in eastus, fetched by westeurope (40 ms away) for it.
		otag, oblobs, _, err := next("bench/app", upstream, "westeurope")
		if err != nil {
			return nil, err
		}
		ofirst, _, ocold, err := pullImage(ctx, east, "hub/app", otag, oblobs)
		if err != nil {
			return nil, fmt.Errorf("cold pull through the cache, fetched by westeurope: %w", err)
		}
		// Warm, against an image pushed to eastus itself.
		_, _, warm, err := pullImage(ctx, east, "hub/app", tag, blobs)
		if err != nil {
			return nil, err
		}
		ltag, lblobs, _, err := next("local/app", &server{base: east})
		if err != nil {
			return nil, err
		}
		if _, _, _, err := pullImage(ctx, east, "local/app", ltag, lblobs); err != nil { // as warm as the cached one
			return nil, err
		}
		_, _, local, err := pullImage(ctx, east, "local/app", ltag, lblobs)
		if err != nil {
			return nil, err
		}
		coldRatio, warmRatio := float64(cold)/float64(direct), float64(warm)/float64(local)
		upBytes := float64(after-before) / float64(imageBytes)
		rows = append(rows, row{
			name:   fmt.Sprintf("cache: cold pull of a %s image (%s RTT to the upstream)", label, shape.RTT()),
			value:  ms(cold),
			target: "<= 1.10 x direct",
			note:   fmt.Sprintf("direct from the upstream across the same link: %s (%.2f x; %s)", ms(direct), coldRatio, distance(coldRatio, 1.10, false)),
		}, row{
			name:   fmt.Sprintf("cache: cold manifest GET of a %s image, first byte", label),
			value:  ms(first),
			target: "<= RTT + 10 ms = " + ms(shape.RTT()+10*time.Millisecond),
			note:   "in the region that fetches it; served once it arrived, before the blobs; " + distance(float64(first), float64(shape.RTT()+10*time.Millisecond), false),
		}, row{
			name:   fmt.Sprintf("cache: cold layer GET of a %s image, first byte", label),
			value:  ms(layerFirst),
			target: "<= RTT + 10 ms = " + ms(shape.RTT()+10*time.Millisecond),
			note:   "asked once the config arrived, as a client pulls; its fetch started with the manifest; " + distance(float64(layerFirst), float64(shape.RTT()+10*time.Millisecond), false),
		}, row{
			name:   fmt.Sprintf("cache: cold pull of a %s image fetched by another region (80 ms RTT to it)", label),
			value:  ms(ocold),
			target: "",
			note: fmt.Sprintf("first byte of its manifest %s; %.2f x direct (the client is in eastus, westeurope fetches it and streams it on)",
				ms(ofirst), float64(ocold)/float64(direct)),
		}, row{
			name:   fmt.Sprintf("cache: warm pull of a %s image", label),
			value:  ms(warm),
			target: "<= 1.05 x local",
			note:   fmt.Sprintf("an image pushed to the region: %s (%.2f x; %s)", ms(local), warmRatio, distance(warmRatio, 1.05, false)),
		}, row{
			name:   fmt.Sprintf("cache: upstream bytes for a %s image pulled in 3 regions", label),
			value:  fmt.Sprintf("%.2f x the image", upBytes),
			target: "1 x the image",
			// The link counts HTTP headers and the manifest too: a few KiB.
			note: fmt.Sprintf("%d bytes across the upstream link (headers and manifest included) for %d bytes of config and layer; %s",
				after-before, imageBytes, distance(math.Round(upBytes*100)/100, 1, false)),
		})
	}
	return rows, nil
}

// pullImage GETs repo:tag's manifest and then each of blobs from base, as
// a client pulls, and returns the manifest's and the last blob's (the
// layer's) times to first byte, and the whole pull's time.
func pullImage(ctx context.Context, base, repo, tag string, blobs []digest.Digest) (manifestFirst, layerFirst, total time.Duration, err error) {
	start := time.Now()
	manifestFirst, _, err = timedGet(ctx, base+"/v2/"+repo+"/manifests/"+tag, "")
	if err != nil {
		return 0, 0, 0, err
	}
	for _, d := range blobs {
		first, _, err := timedGet(ctx, base+"/v2/"+repo+"/blobs/"+d.String(), d)
		if err != nil {
			return 0, 0, 0, err
		}
		layerFirst = first // the last blob: the layer
	}
	return manifestFirst, layerFirst, time.Since(start), nil
}

// putJSON PUTs body to u and wants 200 or 201.
func putJSON(ctx context.Context, u, body string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 201 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("PUT %s: %d %s", u, resp.StatusCode, b)
	}
	return nil
}

// getOK GETs u and wants 200.
func getOK(ctx context.Context, u string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d", u, resp.StatusCode)
	}
	return nil
}

// waitFor calls f every 100 ms until it returns nil, at most within.
func waitFor(ctx context.Context, within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
