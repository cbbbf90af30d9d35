package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// The load the fault scenarios run under: pushers push fresh images
// through the front door from clients of every region; pullers pull
// acknowledged images, through the door and from each region directly,
// and verify every byte. Everything a client sees is counted.

// image is one acknowledged push.
type image struct {
	repo, tag string
	manifest  digest.Digest
	blobs     []digest.Digest
	origin    string    // the region that acknowledged the push
	acked     time.Time // when
}

// paths are what a region must hold for the image: the manifest by tag
// and digest, and every blob.
func (img image) paths() []string {
	base := "/v2/" + img.repo
	out := []string{base + "/manifests/" + img.tag, base + "/manifests/" + img.manifest.String()}
	for _, b := range img.blobs {
		out = append(out, base+"/blobs/"+b.String())
	}
	return out
}

// clientTimeout is where a client gives up: any request that reaches it
// hung past every bound the registry has (they are seconds), and fails the
// scenario.
const clientTimeout = 30 * time.Second

// load drives and counts the clients of one scenario.
type load struct {
	r         *rig
	repo      string
	mu        sync.Mutex
	acked     []image
	pushes    int // acknowledged
	pulls     int // whole images verified
	notYet    int // pulls answered 404 (not replicated yet where asked)
	failures  []failure
	partial   []string
	hung      []string
	longest   time.Duration
	longestOf string
	skip      map[string]bool // regions direct pulls leave alone now (stopped)
	disrupted []time.Time     // when a disruption began (kill -9, stop, disk full)
	clients   map[string]*http.Client
}

func newLoad(r *rig, repo string) *load {
	l := &load{r: r, repo: repo, skip: map[string]bool{}, clients: map[string]*http.Client{}}
	for i := range 3 {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		l.clients[ip] = &http.Client{Timeout: clientTimeout, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 8}}
	}
	r.t.Cleanup(func() {
		for _, c := range l.clients {
			c.CloseIdleConnections()
		}
	})
	return l
}

// Requests begun up to disruptedBefore ahead of a disruption, and until
// disruptedFor after it, may fail: the door has not drained the region
// yet, or the request was in flight in it. So may a request begun
// earlier that was still running at the disruption (a blob read through
// a throttled link for longer than disruptedBefore, in a region killed
// under it: its connection dies with the region).
const (
	disruptedBefore = 5 * time.Second
	disruptedFor    = rigDrained + rigDoorWrite
)

// disrupt notes a disruption now.
func (l *load) disrupt() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.disrupted = append(l.disrupted, time.Now())
}

// grace reports whether a request begun at at that failed at end falls
// in a disruption's window: begun in it, or running when it began.
// Called with l.mu held.
func (l *load) grace(at, end time.Time) bool {
	for _, d := range l.disrupted {
		if at.Before(d.Add(disruptedFor)) && (at.After(d.Add(-disruptedBefore)) || !end.Before(d)) {
			return true
		}
	}
	return false
}

// loadClient returns the load's HTTP client whose connections come from ip.
func (l *load) loadClient(ip string) *http.Client { return l.clients[ip] }

// do sends one request, timing it; a response body is read whole.
func (l *load) do(c *http.Client, method, url string, header map[string]string, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.Do(req)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	took := time.Since(start)
	l.mu.Lock()
	if took > l.longest {
		l.longest, l.longestOf = took, method+" "+url
	}
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		l.hung = append(l.hung, fmt.Sprintf("%s %s: no answer in %s", method, url, clientTimeout))
	}
	l.mu.Unlock()
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, data, nil
}

// failure is what a client saw fail, and when its request began.
type failure struct {
	at  time.Time // the request began
	end time.Time // it failed
	msg string
	img *image // the image a failed pull asked for
}

func (l *load) fail(at time.Time, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, failure{at: at, end: time.Now(), msg: fmt.Sprintf(format, args...)})
}

// failPull records a failed pull of img.
func (l *load) failPull(at time.Time, img image, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, failure{at: at, end: time.Now(), msg: fmt.Sprintf(format, args...), img: &img})
}

// unexcused returns the failures outside every disruption's window, and
// how many fell inside one.
func (l *load) unexcused() (out []string, excused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.failures {
		if l.grace(f.at, f.end) {
			excused++
			continue
		}
		var since []string
		for _, d := range l.disrupted {
			since = append(since, f.at.Sub(d).Round(time.Millisecond).String())
		}
		out = append(out, fmt.Sprintf("%s [begun %v after the disruptions, failed %s later]", f.msg, since, f.end.Sub(f.at).Round(time.Millisecond)))
	}
	return out, excused
}

// push pushes one image of a layer of size bytes through the door as a
// client from ip; it is acknowledged when the manifest PUT answers 201.
func (l *load) push(c *http.Client, n, size int) { l.pushTo(c, "http://"+l.r.door.addr, n, size) }

// pushTo pushes one image to the registry at url (the door, or a region).
func (l *load) pushTo(c *http.Client, url string, n, size int) *image {
	base := url + "/v2/" + l.repo
	cfg := []byte(fmt.Sprintf(`{"push":%d}`, n))
	layer := make([]byte, size)
	_, _ = rand.Read(layer)
	at := time.Now()
	for _, b := range [][]byte{cfg, layer} {
		code, h, body, err := l.do(c, "POST", base+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), nil, b)
		if err != nil || code != 201 {
			l.fail(at, "blob push %d: %d %v %.200s (%s)", n, code, err, body, h.Get("X-Georeg-Region"))
			return nil
		}
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer)))
	tag := fmt.Sprintf("p%d", n)
	code, h, body, err := l.do(c, "PUT", base+"/manifests/"+tag, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, m)
	if err != nil || code != 201 {
		l.fail(at, "manifest push %d: %d %v %.200s (%s)", n, code, err, body, h.Get("X-Georeg-Region"))
		return nil
	}
	img := image{repo: l.repo, tag: tag, manifest: digest.FromBytes(m), blobs: []digest.Digest{digest.FromBytes(cfg), digest.FromBytes(layer)},
		origin: h.Get("X-Georeg-Region"), acked: time.Now()}
	l.mu.Lock()
	l.acked = append(l.acked, img)
	l.pushes++
	l.mu.Unlock()
	return &img
}

// pull pulls img from base (the door or a region) and verifies it. A
// manifest served whole whose blob the same region then cannot serve is a
// partial image.
func (l *load) pull(c *http.Client, base string, img image) {
	at := time.Now()
	url := base + "/v2/" + img.repo
	code, h, body, err := l.do(c, "GET", url+"/manifests/"+img.tag, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}, nil)
	switch {
	case err != nil || code >= 500:
		l.failPull(at, img, "pull %s:%s from %s: %d %v %.200s", img.repo, img.tag, base, code, err, body)
		return
	case code == 404:
		l.mu.Lock()
		l.notYet++
		l.mu.Unlock()
		return
	case code != 200 || digest.FromBytes(body) != img.manifest:
		l.fail(at, "pull %s:%s from %s: %d, digest %s want %s", img.repo, img.tag, base, code, digest.FromBytes(body), img.manifest)
		return
	}
	served := h.Get("X-Georeg-Region")
	for _, b := range img.blobs {
		code, h, body, err := l.do(c, "GET", url+"/blobs/"+b.String(), nil, nil)
		if err == nil && code == 200 && digest.FromBytes(body) == b {
			continue
		}
		if err == nil && code != 200 && code < 500 && h.Get("X-Georeg-Region") == served {
			l.mu.Lock()
			l.partial = append(l.partial, fmt.Sprintf("%s served %s:%s and then %d for %s", base+" "+served, img.repo, img.tag, code, b))
			l.mu.Unlock()
			return
		}
		if err == nil && code == 200 {
			l.mu.Lock()
			l.partial = append(l.partial, fmt.Sprintf("%s served wrong bytes for %s", base, b))
			l.mu.Unlock()
			return
		}
		l.fail(at, "blob %s of %s:%s from %s: %d %v %.200s", b, img.repo, img.tag, base, code, err, body)
		return
	}
	l.mu.Lock()
	l.pulls++
	l.mu.Unlock()
}

// run drives pushers and pullers until ctx ends and waits for them.
// Layers are 16 KiB (inside feed records), 256 KiB (fetched apart) and,
// every fifth push, 4 MiB (long enough to stall mid-body). The pushers
// push at most loadRate bytes a second on average: the disk scenarios
// size a region's disk by it, so that what is acknowledged fits once
// space is back (a faster registry made the load outrun it: 2,004 pushes
// in a 60 s run, 29 MiB/s, left westeurope's disk too small to converge).
func (l *load) run(ctx context.Context, pushers, pullers int) {
	var wg sync.WaitGroup
	var seq sync.Mutex
	next, pushed, start := 0, int64(0), time.Now()
	for p := range pushers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 100_000; i++ {
				seq.Lock()
				n := next
				next++
				size := []int{16 << 10, 256 << 10, 16 << 10, 256 << 10, 4 << 20}[n%5]
				due := start.Add(time.Duration(pushed) * time.Second / loadRate)
				pushed += int64(size)
				seq.Unlock()
				if wait := time.Until(due); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-ctx.Done():
						t.Stop()
						return
					case <-t.C:
					}
				}
				l.push(l.loadClient(fmt.Sprintf("127.0.0.%d", (n+p)%3+1)), n, size)
			}
		})
	}
	for p := range pullers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 100_000; i++ {
				l.mu.Lock()
				var img image
				ok := len(l.acked) > 0
				if ok {
					img = l.acked[mrand.IntN(len(l.acked))]
				}
				skip := map[string]bool{}
				for k, v := range l.skip {
					skip[k] = v
				}
				l.mu.Unlock()
				if !ok {
					time.Sleep(50 * time.Millisecond) // nothing acknowledged yet
					continue
				}
				k := (i + p) % 6
				if k < 3 { // through the door, as a client of each region
					l.pull(l.loadClient(fmt.Sprintf("127.0.0.%d", k+1)), "http://"+l.r.door.addr, img)
					continue
				}
				name := rigRegions[k-3]
				if !skip[name] {
					l.pull(l.loadClient("127.0.0.1"), "http://"+l.r.regions[name].addr, img)
				}
			}
		})
	}
	wg.Wait()
}

// setSkip makes direct pulls leave region name alone (or not).
func (l *load) setSkip(name string, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.skip[name] = on
}

// images returns the acknowledged images.
func (l *load) images() []image {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]image(nil), l.acked...)
}

// report is the scenario's line of figures.
func (l *load) report(name string, converge time.Duration, lost int) string {
	failed, excused := l.unexcused()
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%-22s pushes %4d  pulls %4d  not-yet %3d  client failures %d (+%d within a disruption's bound)  acked-lost %d  partial %d  hung %d  converged %5.1fs after heal  longest request %4.1fs (%s)",
		name, l.pushes, l.pulls, l.notYet, len(failed), excused, lost, len(l.partial), len(l.hung), converge.Seconds(), l.longest.Seconds(), l.longestOf)
}

// firstFew joins up to 3 of list.
func firstFew(list []string) string {
	return strings.Join(list[:min(3, len(list))], "; ")
}
