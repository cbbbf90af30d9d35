package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/node"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// benchJoin measures a fourth region joining a registry of three regions
// (georeg up's, at its default simulated distance between them) that hold
// n images pushed in each: configured with one peer (eastus), it learns
// the others from it and must hold every image of every region when it
// says Ready. The figure is the time from its start to Ready; the new
// region reaches the three over loopback (their registered endpoints).
func benchJoin(ctx context.Context, dir string, quick bool) ([]row, error) {
	n := 100
	if quick {
		n = 20
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	regions := []up.RegionSpec{{Name: "eastus", Listen: "127.0.0.1:0"}, {Name: "westeurope", Listen: "127.0.0.1:0"}, {Name: "southeastasia", Listen: "127.0.0.1:0"}}
	reg, err := up.Start(ctx, up.Config{DataDir: filepath.Join(dir, "join-up"), Secret: "bench", Regions: regions, Distance: up.DefaultDistance}, discard)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); _ = reg.Wait() }()
	fmt.Fprintf(os.Stderr, "pushing %d images in each of three regions ...\n", n)
	var paths []string
	for _, r := range reg.Regions {
		s := &server{base: r.URL}
		for i := range n {
			repo, tag := "bench/join-"+r.Name, fmt.Sprint("i", i)
			if err := pushImage(ctx, s, repo, tag, 700_000+len(paths)); err != nil {
				return nil, err
			}
			paths = append(paths, "/v2/"+repo+"/manifests/"+tag)
		}
	}
	// Every region registered itself, so eastus can tell the new one of
	// all three.
	east := reg.ByName["eastus"]
	for i := 0; ; i++ {
		settings, err := east.Node.Region.Settings(ctx, replicate.ReplicaKind)
		if err == nil && len(settings) >= 3 {
			break
		}
		if i > 600 {
			return nil, fmt.Errorf("eastus knows %d regions after 60 s (%v)", len(settings), err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := config.Default()
	c.Region.Name, c.Region.DataDir = "brazilsouth", filepath.Join(dir, "join-new")
	c.HTTP.Listen = l.Addr().String()
	c.Replication.Secret = "bench"
	c.Replication.Peers = []replicate.Peer{{Name: "eastus", Endpoint: east.URL}}
	nd, err := node.Open(ctx, c, discard)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	served := make(chan error, 1)
	go func() { served <- nd.Serve(ctx, l) }()
	defer func() { cancel(); <-served }()
	base := "http://" + l.Addr().String()
	fmt.Fprintln(os.Stderr, "a fourth region joins through eastus ...")
	if err := waitStateReady(base, start.Add(10*time.Minute)); err != nil {
		return nil, fmt.Errorf("the fourth region: %w", err)
	}
	elapsed := time.Since(start)
	missing := 0
	for _, p := range paths {
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, base+p, nil)
		req.Header.Set("Authorization", "Bearer "+peerauth.FromSecret("bench").Token("eastus", "brazilsouth", time.Now())) // as a peer: never read through
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			missing++
		}
	}
	note := "holds every image"
	if missing > 0 {
		note = fmt.Sprintf("Ready without %d of %d images: a bug", missing, len(paths))
	}
	return []row{{
		name:   fmt.Sprintf("a fourth region configured with one peer, %d images in each of three regions", n),
		value:  fmt.Sprintf("Ready in %s", elapsed.Round(time.Millisecond)),
		target: "Ready only with every image",
		note:   note,
	}}, nil
}

// waitStateReady polls the region at base every 10 ms until its
// replication status says Ready, or deadline passes.
func waitStateReady(base string, deadline time.Time) error {
	for {
		var st replicate.Status
		resp, err := http.Get(base + "/_georeg/v1/status")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && st.State == replicate.StateReady {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not Ready by %s: waiting for %v (%v)", deadline.Format(time.TimeOnly), st.Waiting, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
