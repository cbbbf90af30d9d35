package up_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/up"
)

// upstream is a registry the tests start (go-containerregistry's, the one
// `crane registry serve` runs) behind basic auth, counting blob GETs.
type upstream struct {
	addr      string
	blobGets  atomic.Int64
	pings     atomic.Int64 // GET /v2/
	failWith  atomic.Int32 // a status every request gets, when set (429: with Retry-After; not the ping, as Docker Hub's rate limit)
	retryIn   atomic.Int32 // the Retry-After of those answers, in seconds (0: 1)
	refused   atomic.Int64 // requests answered with failWith
	hang      atomic.Bool  // every request hangs
	holdBlobs atomic.Bool  // blob GETs send half their body, then wait for gate
	gate      chan struct{}
	gateOnce  sync.Once
	release   chan struct{}
	user, pwd string
}

func startUpstream(t *testing.T, user, pwd string, opts ...registry.Option) *upstream {
	t.Helper()
	u := &upstream{user: user, pwd: pwd, release: make(chan struct{}), gate: make(chan struct{})}
	reg := registry.New(append([]registry.Option{registry.Logger(log.New(io.Discard, "", 0))}, opts...)...)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u.hang.Load() {
			select { // a hung upstream: answers nothing until the test ends
			case <-r.Context().Done():
			case <-u.release:
			}
			return
		}
		// A rate limit counts pulls, not pings (GET /v2/): Docker Hub
		// answers those whatever the limit.
		if code := int(u.failWith.Load()); code != 0 && !(code == http.StatusTooManyRequests && r.URL.Path == "/v2/") {
			u.refused.Add(1)
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", strconv.Itoa(max(int(u.retryIn.Load()), 1)))
			}
			http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`, code)
			return
		}
		if gu, gp, ok := r.BasicAuth(); u.user != "" && (!ok || gu != u.user || gp != u.pwd) {
			w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"wrong credentials"}]}`, http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodGet && r.URL.Path == "/v2/" {
			u.pings.Add(1)
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			u.blobGets.Add(1)
			if u.holdBlobs.Load() {
				w = &halfGated{ResponseWriter: w, gate: u.gate, release: u.release, ctx: r.Context()}
			}
		}
		reg.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { close(u.release); _ = srv.Close() })
	return u
}

// openGate lets held blob bodies go on (any number of calls).
func (u *upstream) openGate() { u.gateOnce.Do(func() { close(u.gate) }) }

// halfGated sends the first half of a body (by its Content-Length), then
// waits for gate (or release, or the request's end) before the rest: an
// upstream whose blobs are slow to finish.
type halfGated struct {
	http.ResponseWriter
	gate, release <-chan struct{}
	ctx           context.Context
	sent, half    int64
}

func (h *halfGated) Write(p []byte) (int, error) {
	if h.half == 0 {
		n, _ := strconv.ParseInt(h.Header().Get("Content-Length"), 10, 64)
		h.half = max(n/2, 1)
	}
	written := 0
	if h.sent < h.half {
		k := min(int64(len(p)), h.half-h.sent)
		n, err := h.ResponseWriter.Write(p[:k])
		h.sent += int64(n)
		written += n
		if err != nil || int64(n) < k {
			return written, err
		}
		p = p[k:]
		if h.sent < h.half {
			return written, nil
		}
		if f, ok := h.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-h.gate:
		case <-h.release:
		case <-h.ctx.Done():
			return written, h.ctx.Err()
		}
	}
	n, err := h.ResponseWriter.Write(p)
	h.sent += int64(n)
	return written + n, err
}

// putCacheRule makes cache rule name (rule: its JSON) through region
// base and waits until every region of reg has it.
func putCacheRule(t *testing.T, reg *up.Registry, base, name, rule string) {
	t.Helper()
	if code, _, body := do(t, "PUT", base+"/_georeg/v1/cache-rules/"+name, "application/json", []byte(rule)); code != 200 {
		t.Fatalf("rule %s: %d %s", name, code, body)
	}
	for _, r := range reg.Regions {
		eventually(t, 30*time.Second, func() error {
			if code, _, _ := do(t, "GET", r.URL+"/_georeg/v1/cache-rules/"+name, "", nil); code != 200 {
				return fmt.Errorf("%s has no rule %s yet: %d", r.Name, name, code)
			}
			return nil
		})
	}
}

// put writes a random image of layers to repo:tag in the upstream and
// returns its digest.
func (u *upstream) put(t *testing.T, repo, tag string, layers int) digest.Digest {
	t.Helper()
	return u.putSized(t, repo, tag, layers, 20_000)
}

// putSized is put with layers of size bytes each.
func (u *upstream) putSized(t *testing.T, repo, tag string, layers int, size int64) digest.Digest {
	t.Helper()
	img, err := random.Image(size, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(u.addr+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{}
	if u.user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: u.user, Password: u.pwd}))
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(d.String())
}

// TestAPullThroughTheCacheFetchesOnceAndReplicates: an upstream registry
// behind basic auth holds library/alpine:3.20 (3 layers) and
// library/busybox. A credential set and a wildcard rule (library/* to
// hub/*) made in eastus apply everywhere. Twelve clients, four in each
// region, pull hub/alpine:3.20 through the front door at once: each gets
// the upstream's digest, the upstream served each blob once for the whole
// registry (one region fetches, the others read it through), and every
// region holds the image. busybox pulls by digest. A
// rule with a wrong password answers DENIED naming the rule and the
// upstream's answer; a repository no rule covers stays MANIFEST_UNKNOWN.
func TestAPullThroughTheCacheFetchesOnceAndReplicates(t *testing.T) {
	upstream := startUpstream(t, "puller", "right-password")
	alpine := upstream.put(t, "library/alpine", "3.20", 3)
	busybox := upstream.put(t, "library/busybox", "1.36", 1)
	blobsBefore := upstream.blobGets.Load()

	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), FrontDoor: "127.0.0.1:0"})
	east := newClientAt(t, reg.FrontDoor, "127.0.0.1")
	west := newClientAt(t, reg.FrontDoor, "127.0.0.2")
	asia := newClientAt(t, reg.FrontDoor, "127.0.0.3")
	east.routedTo("eastus")
	west.routedTo("westeurope")
	asia.routedTo("southeastasia")
	put := func(path, body string) {
		t.Helper()
		// A rule names a credential set, which the region answering must
		// have: on a loaded machine the door may send a request to
		// another region, which hears of the set within seconds.
		eventually(t, 30*time.Second, func() error {
			if code, at, out := east.do("PUT", path, "application/json", []byte(body)); code != 200 {
				return fmt.Errorf("PUT %s in %s: %d %s", path, at, code, out)
			}
			return nil
		})
	}
	put("/_georeg/v1/credential-sets/upstream", `{"loginServer":"`+upstream.addr+`","username":"puller","password":"right-password"}`)
	put("/_georeg/v1/cache-rules/library", `{"source":"http://`+upstream.addr+`/library/*","target":"hub/*","credentialSet":"upstream"}`)
	clients := []*clientAt{east, west, asia}
	for _, c := range clients {
		eventually(t, 30*time.Second, func() error {
			for _, path := range []string{"/_georeg/v1/cache-rules/library", "/_georeg/v1/credential-sets/upstream"} {
				if code, at, _ := c.do("GET", path, "", nil); code != 200 {
					return fmt.Errorf("%s does not have %s: %d", at, path, code)
				}
			}
			return nil
		})
	}

	var wg sync.WaitGroup
	for i := range 12 { // four clients in each region at once
		wg.Go(func() {
			code, at, body := clients[i%3].do("GET", "/v2/hub/alpine/manifests/3.20", "", nil)
			if code != 200 || digest.FromBytes(body) != alpine {
				t.Errorf("cold pull from %s: %d %s", at, code, body[:min(len(body), 300)])
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	img := image{manifest: alpine}
	_, _, m := asia.do("GET", "/v2/hub/alpine/manifests/3.20", "", nil)
	var parsed struct {
		Config struct {
			Digest digest.Digest
			Size   int64
		}
		Layers []struct {
			Digest digest.Digest
			Size   int64
		}
	}
	if err := json.Unmarshal(m, &parsed); err != nil || len(parsed.Layers) != 3 {
		t.Fatalf("the manifest: %v %s", err, m)
	}
	img.blobs = append(img.blobs, parsed.Config.Digest)
	for _, l := range parsed.Layers {
		img.blobs = append(img.blobs, l.Digest)
	}
	for _, r := range reg.Regions {
		// Held by every region (asked as a peer: never read through), and
		// tagged there (a Docker manifest: asked with no Accept).
		eventually(t, 30*time.Second, func() error {
			if err := holdsImage(t, reg, r.URL, "hub/alpine", alpine.String(), img); err != nil {
				return err
			}
			resp, err := http.Head(r.URL + "/v2/hub/alpine/manifests/3.20")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if got := resp.Header.Get("Docker-Content-Digest"); got != alpine.String() {
				return fmt.Errorf("%s has hub/alpine:3.20 at %q (%d)", r.Name, got, resp.StatusCode)
			}
			return nil
		})
	}
	// Counted once the image is stored (the pulls were served as it
	// streamed): one region fetched its bytes, once.
	if got := upstream.blobGets.Load() - blobsBefore; got != int64(len(img.blobs)) {
		t.Fatalf("the upstream served %d blob GETs for twelve pulls in three regions of an image of %d blobs, want one each", got, len(img.blobs))
	}
	var fetched, upstreamBytes float64
	imageBytes := parsed.Config.Size
	for _, l := range parsed.Layers {
		imageBytes += l.Size
	}
	for _, r := range reg.Regions {
		fetched += metric(t, r.URL, "georeg_cache_pulls_total", map[string]string{"rule": "library", "outcome": "fetched"})
		upstreamBytes += metric(t, r.URL, "georeg_cache_upstream_bytes_total", map[string]string{"rule": "library"})
	}
	if fetched != 1 || upstreamBytes != float64(imageBytes) {
		t.Fatalf("counted %v fetches and %v upstream bytes across the regions, want 1 and %d", fetched, upstreamBytes, imageBytes)
	}
	// georeg usage: the registry fetched the image's bytes from the
	// upstream once, served them in every region, and so saved twice
	// them; the twelve cold pulls and the checks since were hits or misses.
	for _, r := range reg.Regions {
		for _, b := range img.blobs {
			if code, _, _ := do(t, http.MethodGet, r.URL+"/v2/hub/alpine/blobs/"+b.String(), "", nil); code != 200 {
				t.Fatalf("blob %s in %s: %d", b, r.Name, code)
			}
		}
	}
	ucode, _, uout := do(t, http.MethodGet, reg.ByName["eastus"].URL+"/_georeg/v1/usage", "", nil)
	var usage mgmtapi.UsageReport
	if ucode != 200 || json.Unmarshal(uout, &usage) != nil || len(usage.Regions) != 3 {
		t.Fatalf("usage: %d %s", ucode, uout)
	}
	var hits, misses, fromUpstream, served int64
	for _, ru := range usage.Regions {
		c := ru.Cache["library"]
		if c == nil || c.ServedBytes < imageBytes {
			t.Fatalf("%s's cache usage %+v: served less than the image (%d bytes) its client pulled", ru.Region, c, imageBytes)
		}
		hits, misses, fromUpstream, served = hits+c.Hits, misses+c.Misses, fromUpstream+c.UpstreamBytes, served+c.ServedBytes
	}
	if fromUpstream != imageBytes || misses < 1 || hits+misses < 12 {
		t.Fatalf("usage counted %d bytes from the upstream (want %d), %d misses, %d hits for 12 cold pulls and more", fromUpstream, imageBytes, misses, hits)
	}
	if served-fromUpstream < 2*imageBytes {
		t.Fatalf("usage: %d bytes served, %d from the upstream: saved less than the two regions that did not download (%d)", served, fromUpstream, 2*imageBytes)
	}
	// By digest.
	if code, _, body := asia.do("GET", "/v2/hub/busybox/manifests/"+busybox.String(), "", nil); code != 200 || digest.FromBytes(body) != busybox {
		t.Fatalf("pull by digest: %d %s", code, body)
	}
	// Not in the upstream; not covered by a rule.
	if code, _, body := asia.do("GET", "/v2/hub/nothere/manifests/1", "", nil); code != 404 || !strings.Contains(string(body), "MANIFEST_UNKNOWN") || !strings.Contains(string(body), "cache rule library") {
		t.Fatalf("a pull of what the upstream lacks: %d %s", code, body)
	}
	if code, _, body := asia.do("GET", "/v2/elsewhere/app/manifests/1", "", nil); code != 404 || strings.Contains(string(body), "cache rule") {
		t.Fatalf("a repository no rule covers: %d %s", code, body)
	}
	// A wrong password: DENIED naming the rule and the upstream's answer.
	put("/_georeg/v1/credential-sets/wrong", `{"loginServer":"`+upstream.addr+`","username":"puller","password":"wrong-password"}`)
	put("/_georeg/v1/cache-rules/wrong", `{"source":"http://`+upstream.addr+`/library/busybox","target":"wrong/busybox","credentialSet":"wrong"}`)
	var code int
	var body []byte
	eventually(t, 30*time.Second, func() error { // the region answering has the rule and the set
		code, _, body = east.do("GET", "/v2/wrong/busybox/manifests/1.36", "", nil)
		if code == 404 {
			return fmt.Errorf("not yet: %s", body)
		}
		return nil
	})
	if code != 403 || !strings.Contains(string(body), "DENIED") || !strings.Contains(string(body), "cache rule wrong") || !strings.Contains(string(body), "wrong credentials") {
		t.Fatalf("a pull with a wrong password: %d %s", code, body)
	}
	// Bad input changes nothing.
	for _, bad := range []struct{ path, body string }{
		{"/_georeg/v1/cache-rules/bad", `{"source":"library/nginx","target":"hub/nginx"}`},
		{"/_georeg/v1/cache-rules/bad", `{"source":"docker.io/library/*","target":"hub/nginx"}`},
		{"/_georeg/v1/cache-rules/bad", `{"source":"docker.io/library/nginx","target":"hub/nginx","credentialSet":"nosuch"}`},
		{"/_georeg/v1/cache-rules/x", `{"source":"docker.io/library/nginx","target":"hub/nginx"}`},
		{"/_georeg/v1/credential-sets/bad", `{"loginServer":"docker.io","username":"u"}`},
	} {
		if code, _, out := east.do("PUT", bad.path, "application/json", []byte(bad.body)); code != 400 {
			t.Fatalf("PUT %s %s: %d %s, want 400", bad.path, bad.body, code, out)
		}
	}
	if code, _, out := east.do("GET", "/_georeg/v1/credential-sets/upstream", "", nil); code != 200 || strings.Contains(string(out), "right-password") {
		t.Fatalf("a credential set shown: %d %s (never its password)", code, out)
	}
}

// TestACachedTagFollowsItsUpstreamAndSurvivesItsOutage: a rule that
// revalidates every second. The upstream moves the tag: within seconds a
// pull gets the new digest, and every region follows (the move is a
// push). Moved again, `cache refresh` asked of westeurope moves it at
// once. While the upstream answers 429, and while it hangs (each pull
// within 10 s), pulls of the cached tag still succeed, marked stale; once
// it answers again they are not.
func TestACachedTagFollowsItsUpstreamAndSurvivesItsOutage(t *testing.T) {
	upstream := startUpstream(t, "", "")
	first := upstream.put(t, "library/app", "stable", 1)
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	if code, _, out := do(t, "PUT", east+"/_georeg/v1/cache-rules/lib", "application/json",
		[]byte(`{"source":"http://`+upstream.addr+`/library/*","target":"lib/*","revalidate":"1s"}`)); code != 200 {
		t.Fatalf("rule: %d %s", code, out)
	}
	pull := func(base string) (digest.Digest, string) {
		t.Helper()
		resp, err := http.Get(base + "/v2/lib/app/manifests/stable") // no Accept: a Docker manifest
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("pull from %s: %d %s", base, resp.StatusCode, b)
		}
		return digest.FromBytes(b), resp.Header.Get("X-Georeg-Cache")
	}
	everyRegion := func(want digest.Digest) {
		t.Helper()
		for _, r := range reg.Regions {
			eventually(t, 30*time.Second, func() error {
				resp, err := http.Head(r.URL + "/v2/lib/app/manifests/stable")
				if err != nil {
					return err
				}
				resp.Body.Close()
				if got := resp.Header.Get("Docker-Content-Digest"); got != want.String() {
					return fmt.Errorf("%s has lib/app:stable at %s, want %s", r.Name, got, want)
				}
				return nil
			})
		}
	}
	eventually(t, 30*time.Second, func() error { // the rule reaches westeurope
		if code, _, _ := do(t, "GET", west+"/_georeg/v1/cache-rules/lib", "", nil); code != 200 {
			return fmt.Errorf("westeurope lacks the rule")
		}
		return nil
	})
	if d, _ := pull(west); d != first {
		t.Fatalf("cold pull: %s, want %s", d, first)
	}
	everyRegion(first)

	second := upstream.put(t, "library/app", "stable", 1)
	eventually(t, 30*time.Second, func() error {
		if d, _ := pull(west); d != second {
			return fmt.Errorf("westeurope still serves %s", d)
		}
		return nil
	})
	everyRegion(second)

	third := upstream.put(t, "library/app", "stable", 1)
	code, _, out := do(t, "POST", west+"/_georeg/v1/cache/refresh?repository=lib/app&tag=stable", "", nil)
	if code != 200 || !strings.Contains(string(out), third.String()) || !strings.Contains(string(out), `"changed":true`) {
		t.Fatalf("refresh: %d %s, want %s changed", code, out, third)
	}
	everyRegion(third)

	upstream.failWith.Store(http.StatusTooManyRequests)
	eventually(t, 30*time.Second, func() error { // once the second has passed: asked, refused, stale
		if d, mark := pull(west); d != third || mark != "stale" {
			return fmt.Errorf("during the outage: %s, marked %q", d, mark)
		}
		return nil
	})
	if code, _, out := do(t, "POST", west+"/_georeg/v1/cache/refresh?repository=lib/app&tag=stable", "", nil); code != 503 || !strings.Contains(string(out), "cache rule lib") {
		t.Fatalf("refresh during the outage: %d %s, want 503 naming the rule", code, out)
	}
	// Hung: the check is cut after 5 s and the cached copy served.
	upstream.failWith.Store(0)
	upstream.hang.Store(true)
	eventually(t, 60*time.Second, func() error {
		start := time.Now()
		d, mark := pull(west)
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("a pull waited %s on a hung upstream", took)
		}
		if d != third || mark != "stale" {
			return fmt.Errorf("with the upstream hung: %s, marked %q", d, mark)
		}
		return nil
	})
	upstream.hang.Store(false)
	eventually(t, 60*time.Second, func() error { // after the backoff
		if d, mark := pull(west); d != third || mark != "" {
			return fmt.Errorf("after the outage: %s, marked %q", d, mark)
		}
		return nil
	})
}

// TestACachedTagIsNotAskedAgainBeforeTheUpstreamsRetryAfter: an upstream
// that answers a revalidation 429 with Retry-After: 8 is not asked again
// for 8 s, although the rule's interval (1 s) would have it asked every
// second; the cached copy is served meanwhile, and the tag is checked
// again once the wait is over.
func TestACachedTagIsNotAskedAgainBeforeTheUpstreamsRetryAfter(t *testing.T) {
	upstream := startUpstream(t, "", "")
	want := upstream.put(t, "library/app", "stable", 1)
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions()})
	west := reg.ByName["westeurope"].URL
	putCacheRule(t, reg, west, "lib", `{"source":"http://`+upstream.addr+`/library/*","target":"lib/*","revalidate":"1s"}`)
	pull := func() {
		t.Helper()
		code, body := getManifest(t, west+"/v2/lib/app/manifests/stable")
		if code != 200 || digest.FromBytes(body) != want {
			t.Fatalf("pull: %d %s", code, body[:min(len(body), 300)])
		}
	}
	pull() // cached: stored once its fetch ends, which the pull does not wait for
	eventually(t, 30*time.Second, func() error {
		if !slices.Contains(listTags(t, west, "lib/app"), "stable") {
			return fmt.Errorf("westeurope does not list lib/app:stable yet")
		}
		return nil
	})
	upstream.retryIn.Store(8)
	upstream.failWith.Store(http.StatusTooManyRequests)
	eventually(t, 30*time.Second, func() error { // once the interval passed: asked, refused
		pull()
		if n := upstream.refused.Load(); n == 0 {
			return fmt.Errorf("the upstream was not asked yet")
		}
		return nil
	})
	refusedAt := time.Now()
	// Pulls every 250 ms for 6 s (interval 1 s, backoff 1 s): none asks.
	for i := 0; i < 24; i++ {
		pull()
		time.Sleep(250 * time.Millisecond)
	}
	if n := upstream.refused.Load(); n != 1 {
		t.Fatalf("the upstream was asked %d times within %s of a 429 with Retry-After: 8, want once", n, time.Since(refusedAt).Round(time.Second))
	}
	upstream.failWith.Store(0)
	second := upstream.put(t, "library/app", "stable", 1)
	eventually(t, 30*time.Second, func() error { // the wait over, the tag is checked and moves
		code, body := getManifest(t, west+"/v2/lib/app/manifests/stable")
		if code != 200 || digest.FromBytes(body) != second {
			return fmt.Errorf("westeurope serves %s (%d), want %s", digest.FromBytes(body), code, second)
		}
		return nil
	})
}
