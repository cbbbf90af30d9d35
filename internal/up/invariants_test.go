package up_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/link"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/up"
)

// faultyLink is a reverse proxy between two regions that refuses the
// requests block matches with 503, as a link that is down would, and holds
// the requests holdIf matches until release is closed.
type faultyLink struct {
	block  atomic.Pointer[func(*http.Request) bool]
	holdIf atomic.Pointer[func(*http.Request) bool]
	// holdAnswer: holdIf's requests are proxied at once and their answers
	// held (the peer answered before what happens meanwhile).
	holdAnswer atomic.Bool
	release    chan struct{}
	held       atomic.Int32
	heads      atomic.Int32 // HEAD requests that passed
}

func (f *faultyLink) set(block func(*http.Request) bool) { f.block.Store(&block) }

// hold holds the requests match matches until release is closed.
func (f *faultyLink) hold(match func(*http.Request) bool, release chan struct{}) {
	f.release = release
	f.holdIf.Store(&match)
}

// waiting is how many requests are held now.
func (f *faultyLink) waiting() int { return int(f.held.Load()) }

func (f *faultyLink) start(t *testing.T, target string) string {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b := f.block.Load(); b != nil && (*b)(r) {
			http.Error(w, "link down", http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodHead {
			f.heads.Add(1)
		}
		if h := f.holdIf.Load(); h != nil && (*h)(r) {
			if f.holdAnswer.Load() {
				rec := httptest.NewRecorder()
				proxy.ServeHTTP(rec, r)
				f.held.Add(1)
				<-f.release
				f.held.Add(-1)
				maps.Copy(w.Header(), rec.Header())
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
				return
			}
			f.held.Add(1)
			<-f.release
			f.held.Add(-1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func isFeed(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/_georeg/") && r.URL.Path != peerauth.IdentityPath
}

// startLinked runs three regions where the regions in via reach eastus
// through link; every other pair talks directly.
func startLinked(t *testing.T, link *faultyLink, via []string, noReadThrough map[string]bool) *up.Registry {
	t.Helper()
	return startLinkedWith(t, t.TempDir(), link, via, noReadThrough, 0)
}

// startLinkedIn is startLinked with data in dir and an anti-entropy
// interval.
func startLinkedIn(t *testing.T, dir string, link *faultyLink, via []string, antiEntropy time.Duration) *up.Registry {
	t.Helper()
	return startLinkedWith(t, dir, link, via, nil, antiEntropy)
}

func startLinkedWith(t *testing.T, dir string, link *faultyLink, via []string, noReadThrough map[string]bool, antiEntropy time.Duration) *up.Registry {
	t.Helper()
	return runLinked(t, up.Config{DataDir: dir, Regions: threeRegions(), NoReadThrough: noReadThrough, AntiEntropyInterval: antiEntropy}, link, via)
}

// runLinked runs cfg with the regions in via reaching eastus through link.
func runLinked(t *testing.T, cfg up.Config, link *faultyLink, via []string) *up.Registry {
	t.Helper()
	cfg.Link = func(from, to, u string) (string, error) {
		if to == "eastus" && slices.Contains(via, from) {
			return link.start(t, u), nil
		}
		return u, nil
	}
	return runRegistry(t, cfg)
}

// linkedFrom routes every request region makes to a peer through link
// (up.Config.Link).
func linkedFrom(t *testing.T, link *faultyLink, region string) func(from, to, u string) (string, error) {
	return func(from, to, u string) (string, error) {
		if from == region {
			return link.start(t, u), nil
		}
		return u, nil
	}
}

// errorOf returns the first OCI error code and detail of a body.
func errorOf(body []byte) (string, map[string]any) {
	var env struct {
		Errors []struct {
			Code   string
			Detail map[string]any
		}
	}
	_ = json.Unmarshal(body, &env)
	if len(env.Errors) == 0 {
		return "", nil
	}
	return env.Errors[0].Code, env.Errors[0].Detail
}

// TestInvariant6ReadThroughFetchesWhatHasNotArrived: with westeurope cut
// off from eastus's feed, an image pushed to eastus (only) is still served
// complete in westeurope, fetched on demand.
func TestInvariant6ReadThroughFetchesWhatHasNotArrived(t *testing.T) {
	link := &faultyLink{}
	link.set(isFeed)
	// Both other regions hear nothing of eastus by feed: only eastus holds
	// the image.
	reg := startLinked(t, link, []string{"westeurope", "southeastasia"}, nil)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	img := push(t, east, "rt/app", "v1", "readthrough", 500_000)
	if err := pullable(t, west, "rt/app", "v1", img); err != nil {
		t.Fatalf("read-through: %v", err)
	}
}

// TestInvariant6ErrorsNameWhereAnImageIs: when westeurope cannot fetch an
// image that exists in eastus, it answers MANIFEST_UNKNOWN naming eastus
// and the state, never BLOB_UNKNOWN; with read-through off it names eastus
// without fetching.
func TestInvariant6ErrorsNameWhereAnImageIs(t *testing.T) {
	link := &faultyLink{}
	// The feed and every blob are cut off; manifests can still be asked
	// about, so westeurope knows where the image is but cannot fetch it.
	link.set(func(r *http.Request) bool { return isFeed(r) || strings.Contains(r.URL.Path, "/blobs/") })
	reg := startLinked(t, link, []string{"westeurope", "southeastasia"}, map[string]bool{"southeastasia": true})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	asia := reg.ByName["southeastasia"].URL
	img := push(t, east, "honest/app", "v1", "honest", 1000)

	for _, ref := range []string{"v1", img.manifest.String()} {
		code, _, body := do(t, "GET", west+"/v2/honest/app/manifests/"+ref, "", nil)
		c, detail := errorOf(body)
		if code != 404 || c != "MANIFEST_UNKNOWN" || fmt.Sprint(detail["available_in"]) != "[eastus]" || detail["state"] != "replicating" {
			t.Fatalf("GET %s in westeurope: %d %s", ref, code, body)
		}
	}
	t.Run("with read-through off the error names the region without fetching", func(t *testing.T) {
		code, _, body := do(t, "GET", asia+"/v2/honest/app/manifests/v1", "", nil)
		c, detail := errorOf(body)
		if code != 404 || c != "MANIFEST_UNKNOWN" || fmt.Sprint(detail["available_in"]) != "[eastus]" {
			t.Fatalf("GET in southeastasia: %d %s", code, body)
		}
	})
}

// TestInvariant7ASplitPushIsRepaired: blobs uploaded to eastus, the
// manifest pushed to westeurope (which cannot hear eastus's feed): the
// manifest PUT fetches the blobs from eastus and succeeds.
func TestInvariant7ASplitPushIsRepaired(t *testing.T) {
	link := &faultyLink{}
	link.set(isFeed)
	reg := startLinked(t, link, []string{"westeurope", "southeastasia"}, nil)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	img := push(t, east, "split/app", "base", "split", 200_000)
	_, _, manifest := do(t, "GET", east+"/v2/split/app/manifests/base", "", nil)
	code, _, body := do(t, "PUT", west+"/v2/split/app/manifests/v1", "application/vnd.oci.image.manifest.v1+json", manifest)
	if code != 201 {
		t.Fatalf("split push refused: %d %s", code, body)
	}
	if err := pullable(t, west, "split/app", "v1", img); err != nil {
		t.Fatal(err)
	}
}

// TestInvariant5CachesFollowReplication: a tag read (and cached) in
// westeurope follows a new push of the same tag in eastus.
func TestInvariant5CachesFollowReplication(t *testing.T) {
	reg := startRegistry(t)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	first := push(t, east, "cache/app", "latest", "first", 1000)
	tagArrives(t, west, "cache/app", "latest", first.manifest)
	for range 3 { // read it into the cache
		if err := pullable(t, west, "cache/app", "latest", first); err != nil {
			t.Fatal(err)
		}
	}
	second := push(t, east, "cache/app", "latest", "second", 1000)
	eventually(t, 30*time.Second, func() error { return pullable(t, west, "cache/app", "latest", second) })
}

// TestInvariant2APullerNeverSeesAPartialImage: a client pulling in
// westeurope in a loop while images land in eastus never gets a manifest
// whose blobs it cannot fetch, nor a digest mismatch.
func TestInvariant2APullerNeverSeesAPartialImage(t *testing.T) {
	// Read-through off in westeurope: what it serves, it holds (a blob it
	// lacks is not fetched on demand, so a manifest served before its
	// blobs would show as a failed blob GET).
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), NoReadThrough: map[string]bool{"westeurope": true}})
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var pulls, fails, notYet atomic.Int64
	wg.Go(func() {
		for i := 0; i < 100_000; i++ { // bounded; stops when the pushes end
			select {
			case <-stop:
				return
			default:
			}
			code, h, body := do(t, "GET", west+"/v2/pull/app/manifests/latest", "", nil)
			if code == 404 {
				notYet.Add(1)
				continue
			}
			var m struct{ Layers, Config json.RawMessage }
			if code != 200 || json.Unmarshal(body, &m) != nil || h.Get("Docker-Content-Digest") == "" {
				fails.Add(1)
				continue
			}
			var manifest struct {
				Config struct{ Digest string }
				Layers []struct{ Digest string }
			}
			_ = json.Unmarshal(body, &manifest)
			for _, d := range append([]string{manifest.Config.Digest}, layerDigests(manifest.Layers)...) {
				code, _, blob := do(t, "GET", west+"/v2/pull/app/blobs/"+d, "", nil)
				if code != 200 || "sha256:"+sha256Hex(blob) != d {
					t.Errorf("blob %s of a served manifest: %d", d, code)
					fails.Add(1)
				}
			}
			pulls.Add(1)
		}
	})
	// Layers inside a feed record (below the 64 KiB inline size) and
	// fetched apart (above it, up to 2 MiB: a window for a partial image).
	for i := range 30 {
		push(t, east, "pull/app", "latest", fmt.Sprintf("image-%d", i), []int{20_000, 300_000, 2_000_000}[i%3]+i)
	}
	final := push(t, east, "pull/app", "latest", "final", 1234)
	eventually(t, 30*time.Second, func() error { return pullable(t, west, "pull/app", "latest", final) })
	close(stop)
	wg.Wait()
	if fails.Load() > 0 {
		t.Fatalf("%d of %d pulls saw a partial image", fails.Load(), pulls.Load())
	}
	if pulls.Load() == 0 {
		t.Fatalf("no pull was served whole (%d answered 404): the test proves nothing", notYet.Load())
	}
	t.Logf("%d complete pulls, %d before the first image arrived", pulls.Load(), notYet.Load())
}

func layerDigests(ls []struct{ Digest string }) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Digest)
	}
	return out
}

// TestInvariant6ABlobIsStreamedWhileItIsStored: a blob GET in westeurope
// for a blob only eastus holds streams it from eastus, and keeps it: once
// the link is fully down it is still served, from westeurope's own store.
func TestInvariant6ABlobIsStreamedWhileItIsStored(t *testing.T) {
	link := &faultyLink{}
	link.set(isFeed)
	reg := startLinked(t, link, []string{"westeurope", "southeastasia"}, nil)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	blob := bytes.Repeat([]byte("streamed read-through;"), 200_000)
	d := digest.FromBytes(blob)
	if code, _, _ := do(t, "POST", east+"/v2/stream/app/blobs/uploads/?digest="+d.String(), "", blob); code != 201 {
		t.Fatal("push blob")
	}
	// A HEAD answers from eastus's size and stores nothing: with the link
	// down it is unknown again.
	if code, h, _ := do(t, "HEAD", west+"/v2/stream/app/blobs/"+d.String(), "", nil); code != 200 || h.Get("Content-Length") != fmt.Sprint(len(blob)) {
		t.Fatalf("HEAD read-through: %d %v", code, h)
	}
	link.set(func(*http.Request) bool { return true })
	if code, _, _ := do(t, "HEAD", west+"/v2/stream/app/blobs/"+d.String(), "", nil); code != 404 {
		t.Fatalf("HEAD stored the blob: %d after the link went down", code)
	}
	link.set(isFeed)
	code, h, body := do(t, "GET", west+"/v2/stream/app/blobs/"+d.String(), "", nil)
	if code != 200 || !bytes.Equal(body, blob) || h.Get("Content-Length") != fmt.Sprint(len(blob)) {
		t.Fatalf("streamed read-through: %d, %d bytes", code, len(body))
	}
	link.set(func(*http.Request) bool { return true })
	eventually(t, 10*time.Second, func() error {
		code, _, body := do(t, "GET", west+"/v2/stream/app/blobs/"+d.String(), "", nil)
		if code != 200 || !bytes.Equal(body, blob) {
			return fmt.Errorf("kept copy: %d", code)
		}
		return nil
	})
}

// TestContentComesFromTheNearestPeerHoldingIt: southeastasia lists
// westeurope before eastus (nearer), and its link to eastus refuses blob
// downloads. An image pushed to eastus still reaches southeastasia: its
// layer comes from westeurope once westeurope holds it.
func TestContentComesFromTheNearestPeerHoldingIt(t *testing.T) {
	fault := &faultyLink{}
	fault.set(func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
	})
	latency := map[string]time.Duration{"eastus-westeurope": time.Millisecond, "westeurope-southeastasia": time.Millisecond, "eastus-southeastasia": 3 * time.Millisecond}
	reg := runRegistry(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(),
		Distance: func(a, b string) (link.Shape, bool) {
			l, ok := latency[a+"-"+b]
			if !ok {
				l, ok = latency[b+"-"+a]
			}
			return link.Shape{Latency: l}, ok
		},
		Link: func(from, to, u string) (string, error) {
			if from == "southeastasia" && to == "eastus" {
				return fault.start(t, u), nil
			}
			return u, nil
		}})
	east, asia := reg.ByName["eastus"].URL, reg.ByName["southeastasia"].URL
	img := push(t, east, "near/app", "v1", "nearest", 3<<20)
	eventually(t, 60*time.Second, func() error {
		if tagState(t, asia, "near/app")["v1"] != img.manifest.String() {
			return fmt.Errorf("not in southeastasia yet")
		}
		return nil
	})
	fault.set(func(*http.Request) bool { return true })
	if err := pullable(t, asia, "near/app", "v1", img); err != nil {
		t.Fatal(err)
	}
}

// TestABlobGETThatWaitsForAnotherFetchIsServedWhole: a client's GET of a
// blob another fetch (the feed follower's) is already bringing waits for
// that fetch and then gets the whole blob, not an empty answer. The link
// holds eastus's blob response until the client's request is in, so the
// two fetches overlap every time.
func TestABlobGETThatWaitsForAnotherFetchIsServedWhole(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	held := make(chan struct{})
	link := &faultyLink{}
	reg := startLinkedWith(t, t.TempDir(), link, []string{"westeurope"}, nil, 0)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL
	blob := bytes.Repeat([]byte("wait for the other fetch;"), 100_000)
	d := digest.FromBytes(blob)
	link.hold(func(r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
			once.Do(func() { close(held) })
			return true
		}
		return false
	}, release)
	if code, _, _ := do(t, "POST", east+"/v2/wait/app/blobs/uploads/?digest="+d.String(), "", blob); code != 201 {
		t.Fatal("push")
	}
	<-held // westeurope's follower is fetching the blob, and is held
	got := make(chan []byte, 1)
	go func() {
		resp, err := http.Get(west + "/v2/wait/app/blobs/" + d.String())
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- b
	}()
	// The client's read-through opens its own GET to eastus (held too)
	// before it joins the held fetch; from then on it is served without
	// streaming, which is the path under test.
	released := false
	defer func() {
		if !released {
			close(release) // a failed wait must not leave the link holding
		}
	}()
	eventually(t, 10*time.Second, func() error {
		if link.waiting() < 2 {
			return fmt.Errorf("the client's read-through has not asked eastus yet (%d requests held)", link.waiting())
		}
		return nil
	})
	released = true
	close(release)
	if b := <-got; !bytes.Equal(b, blob) {
		t.Fatalf("the waiting GET got %d bytes of %d", len(b), len(blob))
	}
}

// TestReplicationThatMakesNoProgressIsReportedWedged: the links to
// eastus refuse blob downloads but pass the feed (so no other region has
// the blob to offer either): westeurope is behind a peer that answers and
// applies nothing, and reports it wedged (status, and the front door shows
// it; a region's health stays its own); once the link heals it is not.
func TestReplicationThatMakesNoProgressIsReportedWedged(t *testing.T) {
	link := &faultyLink{}
	link.set(func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
	})
	reg := runLinked(t, up.Config{DataDir: t.TempDir(), Regions: threeRegions(), WedgedAfter: 200 * time.Millisecond},
		link, []string{"westeurope", "southeastasia"})
	push(t, reg.ByName["eastus"].URL, "wedge/app", "v1", "wedged", 200_000) // above the inline size
	status := func() replicate.Status {
		_, _, out := do(t, "GET", reg.ByName["westeurope"].URL+"/_georeg/v1/status", "", nil)
		var st replicate.Status
		_ = json.Unmarshal(out, &st)
		return st
	}
	eventually(t, 30*time.Second, func() error {
		if st := status(); fmt.Sprint(st.Wedged) != "[eastus]" {
			return fmt.Errorf("westeurope reports wedged %v", st.Wedged)
		}
		return nil
	})
	link.set(func(*http.Request) bool { return false })
	eventually(t, 60*time.Second, func() error {
		if st := status(); len(st.Wedged) != 0 {
			return fmt.Errorf("still wedged on %v", st.Wedged)
		}
		return nil
	})
}
