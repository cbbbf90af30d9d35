package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/config"
	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/node"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// benchReadThrough measures read-through: westeurope holds nothing of an
// image eastus holds (its feed from eastus is held, so nothing
// replicates), and reaches eastus over a simulated link (40 ms one way,
// 100 MB/s). A client next to westeurope GETs a blob there cold: the
// region fetches it from eastus and streams it while storing it. The
// same client GETting the blob from eastus itself, across the same link,
// is the direct pull it is compared with. Then whole images: a cold pull
// through westeurope (manifest, which read-through fetches with its whole
// image, then each blob) against a direct pull from eastus.
func benchReadThrough(ctx context.Context, dir string, quick bool) ([]row, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	src, err := up.Start(ctx, up.Config{DataDir: filepath.Join(dir, "rt-src"), Secret: "bench",
		Regions: []up.RegionSpec{{Name: "eastus", Listen: "127.0.0.1:0"}}}, discard)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); _ = src.Wait() }()
	east := &server{base: src.ByName["eastus"].URL}
	shape := link.Shape{Latency: 40 * time.Millisecond, Bandwidth: 100_000_000}
	proxy, err := link.Start(ctx, strings.TrimPrefix(east.base, "http://"), shape)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); proxy.Wait() }()
	far := "http://" + proxy.Addr() // eastus, as seen from westeurope's side of the link
	heldFeed, err := holdFeed(ctx, far)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := config.Default()
	c.Region.Name, c.Region.DataDir = "westeurope", filepath.Join(dir, "rt-west")
	c.HTTP.Listen = l.Addr().String()
	c.Replication.Secret = "bench"
	c.Replication.Peers = []replicate.Peer{{Name: "eastus", Endpoint: heldFeed}}
	nd, err := node.Open(ctx, c, discard)
	if err != nil {
		return nil, err
	}
	served := make(chan error, 1)
	go func() { served <- nd.Serve(ctx, l) }()
	defer func() { cancel(); <-served }()
	west := "http://" + l.Addr().String()

	sizes := []int64{1 << 20, 10 << 20, 100 << 20}
	if quick {
		sizes = []int64{1 << 20}
	}
	var rows []row
	seed := 900_000
	for _, size := range sizes {
		// A blob, cold, read through and direct.
		var rt, direct [2]time.Duration // first byte, whole
		for _, target := range []struct {
			base string
			out  *[2]time.Duration
		}{{west, &rt}, {far, &direct}} {
			seed++
			block := seededBlock(seed)
			d := digestOf(block, size)
			if err := upload(ctx, east, "bench/rt", d, size, newRepeat(block, size)); err != nil {
				return nil, err
			}
			first, whole, err := timedGet(ctx, target.base+"/v2/bench/rt/blobs/"+d.String(), d)
			if err != nil {
				return nil, fmt.Errorf("GET from %s: %w", target.base, err)
			}
			*target.out = [2]time.Duration{first, whole}
		}
		rtt := shape.RTT()
		rows = append(rows, row{
			name:   fmt.Sprintf("read-through blob GET %s, first byte (%s RTT)", sizeLabel(size), rtt),
			value:  ms(rt[0]),
			target: "<= 50 ms + RTT = " + ms(50*time.Millisecond+rtt),
			note:   fmt.Sprintf("direct across the link: %s; %s", ms(direct[0]), distance(float64(rt[0]), float64(50*time.Millisecond+rtt), false)),
		}, row{
			name:  fmt.Sprintf("read-through blob GET %s, whole", sizeLabel(size)),
			value: ms(rt[1]),
			note:  fmt.Sprintf("direct across the link: %s (%.2f x)", ms(direct[1]), float64(rt[1])/float64(direct[1])),
		})
		// A whole image, cold: through westeurope, and direct.
		var pulls [2]time.Duration
		for i, base := range []string{west, far} {
			seed++
			tag := fmt.Sprintf("cold%d", seed)
			layer, cfg, err := pushSized(ctx, east, "bench/rtimg", tag, seed, size)
			if err != nil {
				return nil, err
			}
			start := time.Now()
			if _, _, err := timedGet(ctx, base+"/v2/bench/rtimg/manifests/"+tag, ""); err != nil {
				return nil, err
			}
			for _, d := range []digest.Digest{cfg, layer} {
				if _, _, err := timedGet(ctx, base+"/v2/bench/rtimg/blobs/"+d.String(), d); err != nil {
					return nil, err
				}
			}
			pulls[i] = time.Since(start)
		}
		rows = append(rows, row{
			name:  fmt.Sprintf("cold pull of a %s image through read-through", sizeLabel(size)),
			value: ms(pulls[0]),
			note:  fmt.Sprintf("direct across the link: %s (%.2f x)", ms(pulls[1]), float64(pulls[0])/float64(pulls[1])),
		})
	}
	return rows, nil
}

// holdFeed serves a reverse proxy to base that holds every feed request
// until ctx ends (so nothing replicates) and passes everything else.
func holdFeed(ctx context.Context, base string) (string, error) {
	u, _ := url.Parse(base)
	rp := httputil.NewSingleHostReverseProxy(u)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_georeg/v1/feed") {
			select {
			case <-ctx.Done():
			case <-r.Context().Done():
			}
			http.Error(w, "held", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return "http://" + l.Addr().String(), nil
}

// timedGet GETs u and returns the time to its first body byte and to its
// end; with want set, the body must hash to it.
func timedGet(ctx context.Context, u string, want digest.Digest) (time.Duration, time.Duration, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, 0, fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	var first time.Duration
	h := digest.SHA256.Digester()
	buf := make([]byte, 1<<20)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 && first == 0 {
			first = time.Since(start)
		}
		h.Hash().Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, err
		}
	}
	if want != "" && h.Digest() != want {
		return 0, 0, fmt.Errorf("GET %s: the body does not hash to %s", u, want)
	}
	return first, time.Since(start), nil
}

// pushSized pushes an image whose one layer has size bytes to repo:tag,
// and returns its layer's and config's digests.
func pushSized(ctx context.Context, s *server, repo, tag string, seed int, size int64) (digest.Digest, digest.Digest, error) {
	block := seededBlock(seed)
	layer := digestOf(block, size)
	if err := upload(ctx, s, repo, layer, size, newRepeat(block, size)); err != nil {
		return "", "", err
	}
	cfg := []byte(fmt.Sprintf(`{"readthrough":%d}`, seed))
	if err := upload(ctx, s, repo, digest.FromBytes(cfg), int64(len(cfg)), bytes.NewReader(cfg)); err != nil {
		return "", "", err
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), layer, size)
	req, _ := http.NewRequestWithContext(ctx, "PUT", s.base+"/v2/"+repo+"/manifests/"+tag, strings.NewReader(m))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	return layer, digest.FromBytes(cfg), expectCreated(req)
}
