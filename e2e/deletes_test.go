package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/peerauth"
)

// holds reports whether the region at addr holds path in its own storage:
// asked as a peer, it never reads through.
func holds(t *testing.T, addr, path string) bool {
	t.Helper()
	code, _ := status(t, "HEAD", "http://"+addr+path, map[string]string{
		"Authorization": "Bearer " + peerToken(t, "e2e-secret", "http://"+addr),
		"Accept":        "application/vnd.oci.image.manifest.v1+json"}, nil)
	return code == 200
}

// antiEntropyRounds sums a region's completed anti-entropy rounds.
func antiEntropyRounds(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	n := 0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "georeg_antientropy_rounds_total{") && strings.Contains(line, `outcome="ok"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += int(v)
		}
	}
	return n
}

// TestInvariant9DeletesSurviveKill9OfAnyRegion: in each region in turn a
// tag, a manifest by digest and a blob pushed in another region are
// deleted, and a region is killed with SIGKILL the instant the last delete
// is acknowledged (the deleting region itself, then the others); after
// its restart every region answers 404 to clients, and still does after
// every region has run anti-entropy rounds with its peers since.
func TestInvariant9DeletesSurviveKill9OfAnyRegion(t *testing.T) {
	names := []string{"eastus", "westeurope", "southeastasia"}
	regions := startRegions(t, names...)
	for i, name := range names {
		deleter, origin := regions[name], regions[names[(i+1)%3]]
		victim := regions[names[(2*i)%3]] // the deleter first, then others
		repo := "kill9del/" + name
		d := pushImage(t, origin.addr, repo, "v1", repo+"-tagged")
		byDigest := pushImage(t, origin.addr, repo, "v2", repo+"-by-digest")
		blob := []byte("a blob no manifest uses, " + repo)
		if code, _ := status(t, "POST", "http://"+origin.addr+"/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(blob).String(), nil, blob); code != 201 {
			t.Fatalf("blob push: %d", code)
		}
		paths := []string{"/v2/" + repo + "/manifests/v1", "/v2/" + repo + "/manifests/" + byDigest.String(), "/v2/" + repo + "/blobs/" + digest.FromBytes(blob).String()}
		waitFor(t, 30*time.Second, func() error {
			for _, r := range regions {
				for _, p := range paths {
					if !holds(t, r.addr, p) {
						return fmt.Errorf("%s does not hold %s yet", r.addr, p)
					}
				}
			}
			return nil
		})
		for _, p := range paths {
			if code, _ := status(t, "DELETE", "http://"+deleter.addr+p, nil, nil); code != 202 {
				t.Fatalf("DELETE %s in %s: %d", p, name, code)
			}
		}
		victim.kill9()
		victim.start()
		gone := func() error {
			for rn, r := range regions {
				for _, p := range paths {
					if code, _ := status(t, "GET", "http://"+r.addr+p, nil, nil); code != 404 {
						return fmt.Errorf("%s serves %s: %d", rn, p, code)
					}
				}
			}
			return nil
		}
		waitFor(t, 30*time.Second, gone)
		// Anti-entropy runs every second in these regions: two more rounds
		// everywhere, then nothing deleted may be back.
		before := map[string]int{}
		for rn, r := range regions {
			before[rn] = antiEntropyRounds(t, r.addr)
		}
		waitFor(t, 30*time.Second, func() error {
			for rn, r := range regions {
				if n := antiEntropyRounds(t, r.addr); n < before[rn]+4 {
					return fmt.Errorf("%s ran %d anti-entropy rounds since", rn, n-before[rn])
				}
			}
			return nil
		})
		if err := gone(); err != nil {
			t.Fatalf("after anti-entropy: %v", err)
		}
		if code, _ := status(t, "GET", "http://"+deleter.addr+"/v2/"+repo+"/manifests/"+d.String(), map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}, nil); code != 200 {
			t.Fatalf("the manifest the deleted tag pointed at is gone too: %d", code)
		}
	}
}

// regionState reads a region's replication state and what it waits for.
func regionState(t *testing.T, addr string) (string, []string, map[string]string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/_georeg/v1/status")
	if err != nil {
		return "down", nil, nil
	}
	defer resp.Body.Close()
	var st struct {
		State   string
		Waiting []string
		Peers   []struct{ Peer, State string }
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("status: %v %s", err, bytes.TrimSpace(body))
	}
	peers := map[string]string{}
	for _, p := range st.Peers {
		peers[p.Peer] = p.State
	}
	return st.State, st.Waiting, peers
}

// TestARegionThatWasReadyIsReadyAfARestartWhileAPeerIsDown: a restarted
// region does not wait for a peer that is down to be routed to again (it
// says the peer is unreachable); a region that was never Ready does wait.
func TestARegionThatWasReadyIsReadyAfterARestartWhileAPeerIsDown(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope", "southeastasia")
	east, asia := regions["eastus"], regions["southeastasia"]
	waitFor(t, 30*time.Second, func() error {
		for name, r := range regions {
			if st, w, _ := regionState(t, r.addr); st != "Ready" {
				return fmt.Errorf("%s is %s (%v)", name, st, w)
			}
		}
		return nil
	})
	pushImage(t, regions["westeurope"].addr, "restart/app", "v1", "restart")
	asia.kill9()
	east.kill9()
	east.start()
	waitFor(t, 30*time.Second, func() error {
		st, w, peers := regionState(t, east.addr)
		if st != "Ready" || peers["southeastasia"] != "unreachable" || peers["westeurope"] != "caught up" {
			return fmt.Errorf("eastus after a restart: %s, waiting for %v, peers %v", st, w, peers)
		}
		return nil
	})
	if !holds(t, east.addr, "/v2/restart/app/manifests/v1") {
		t.Fatal("eastus is Ready without what westeurope pushed while it was down")
	}
	asia.start()
	waitFor(t, 30*time.Second, func() error {
		if st, w, _ := regionState(t, asia.addr); st != "Ready" {
			return fmt.Errorf("southeastasia is %s (%v)", st, w)
		}
		return nil
	})
}

// TestWaitForADeleteAndItsStatus: `georeg wait --deleted` returns once a
// tag, a manifest and a blob deleted in eastus are deleted in westeurope,
// `georeg image status` shows them deleted in every region with the
// delete's version, and a wait for a delete that never happened times out
// saying where the object is.
func TestWaitForADeleteAndItsStatus(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope")
	east := regions["eastus"].addr
	pushImage(t, east, "waitdel/app", "v1", "waitdel-tagged")
	byDigest := pushImage(t, east, "waitdel/app", "v2", "waitdel-by-digest")
	blob := []byte("a blob to delete")
	if code, _ := status(t, "POST", "http://"+east+"/v2/waitdel/app/blobs/uploads/?digest="+digest.FromBytes(blob).String(), nil, blob); code != 201 {
		t.Fatalf("blob push: %d", code)
	}
	run(t, georegBin, "wait", east+"/waitdel/app:v2", "--region", "westeurope", "--timeout", "60s")
	refs := map[string]string{
		east + "/waitdel/app:v1":                                 "/v2/waitdel/app/manifests/v1",
		east + "/waitdel/app@" + byDigest.String():               "/v2/waitdel/app/manifests/" + byDigest.String(),
		east + "/waitdel/app@" + digest.FromBytes(blob).String(): "/v2/waitdel/app/blobs/" + digest.FromBytes(blob).String(),
	}
	for ref, path := range refs {
		waitFor(t, 30*time.Second, func() error {
			if !holds(t, regions["westeurope"].addr, path) {
				return fmt.Errorf("westeurope does not hold %s yet", path)
			}
			return nil
		})
		if code, _ := status(t, "DELETE", "http://"+east+path, nil, nil); code != 202 {
			t.Fatalf("DELETE %s: %d", path, code)
		}
		out := run(t, georegBin, "wait", ref, "--region", "westeurope", "--deleted", "--timeout", "60s")
		if !strings.Contains(out, "is deleted in westeurope") {
			t.Fatalf("wait --deleted %s: %s", ref, out)
		}
		if holds(t, regions["westeurope"].addr, path) {
			t.Fatalf("wait --deleted returned while westeurope still holds %s", path)
		}
		var st struct {
			Deleted        bool
			DeletedVersion string
			Complete       bool
			Regions        []struct{ Name, State, Version string }
		}
		js := run(t, georegBin, "image", "status", ref, "--output", "json")
		if err := json.Unmarshal([]byte(js), &st); err != nil || !st.Deleted || !st.Complete || len(st.Regions) != 2 {
			t.Fatalf("status of %s: %v %s", ref, err, js)
		}
		for _, r := range st.Regions {
			if r.State != "deleted" || r.Version != st.DeletedVersion {
				t.Fatalf("status of %s in %s: %+v, want deleted at %s", ref, r.Name, r, st.DeletedVersion)
			}
		}
	}
	pushImage(t, east, "waitdel/app", "keep", "waitdel-kept")
	run(t, georegBin, "wait", east+"/waitdel/app:keep", "--region", "westeurope", "--timeout", "60s")
	out, err := runErr(t, georegBin, "wait", east+"/waitdel/app:keep", "--region", "westeurope", "--deleted", "--timeout", "1s")
	if err == nil || !strings.Contains(out, "timed out after 1s") || !strings.Contains(out, "present in eastus, westeurope") {
		t.Fatalf("wait --deleted for a tag never deleted: %v %s", err, out)
	}
}

// peerToken is eastus's token for the region at base (which it asks to
// prove its name), under the replication secret.
func peerToken(t *testing.T, secret, base string) string {
	t.Helper()
	s := peerauth.NewSigner(peerauth.FromSecret(secret), "eastus", http.DefaultClient)
	name, err := s.Identify(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	return s.Token(name)
}
