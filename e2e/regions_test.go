package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// startRegions runs one `georeg serve` process per region, each configured
// (YAML) with the others as peers.
func startRegions(t *testing.T, names ...string) map[string]*server {
	t.Helper()
	dir := t.TempDir()
	var all []peer
	for _, n := range names {
		all = append(all, peer{n, freeAddr(t)})
	}
	out := map[string]*server{}
	for _, self := range all {
		var others []peer
		for _, p := range all {
			if p != self {
				others = append(others, p)
			}
		}
		out[self.name] = startRegion(t, dir, self.name, self.addr, others)
	}
	return out
}

// peer is a region's name and address.
type peer struct{ name, addr string }

// startRegion runs `georeg serve` for region name on addr, configured
// (YAML, under dir) to follow peers; it is killed at cleanup.
func startRegion(t *testing.T, dir, name, addr string, peers []peer) *server {
	t.Helper()
	return startRegionWithSecret(t, dir, name, addr, peers, "e2e-secret")
}

// startRegionWithSecret is startRegion with another replication secret.
func startRegionWithSecret(t *testing.T, dir, name, addr string, peers []peer, secret string) *server {
	t.Helper()
	var list strings.Builder
	for _, p := range peers {
		fmt.Fprintf(&list, "    - name: %s\n      endpoint: http://%s\n", p.name, p.addr)
	}
	data := filepath.Join(dir, name)
	cfg := fmt.Sprintf("region:\n  name: %s\n  dataDir: %s\nhttp:\n  listen: %s\nreplication:\n  secret: %s\n  wait: 5s\n  antiEntropyInterval: 1s\n  peers:\n%soutbound:\n  allow: [127.0.0.0/8]\nlog:\n  level: info\n",
		name, data, addr, secret, list.String())
	file := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, addr: addr, data: data, args: []string{"--config", file}}
	s.start()
	t.Cleanup(s.kill)
	s.logOnFailure(name)
	return s
}

func pushImage(t *testing.T, addr, repo, tag, seed string) digest.Digest {
	t.Helper()
	base := "http://" + addr + "/v2/" + repo
	cfg := []byte(`{"seed":"` + seed + `"}`)
	layer := bytes.Repeat([]byte(seed), 20_000)
	for _, b := range [][]byte{cfg, layer} {
		if code, _ := status(t, "POST", base+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), nil, b); code != 201 {
			t.Fatalf("blob push to %s: %d", addr, code)
		}
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer)))
	if code, _ := status(t, "PUT", base+"/manifests/"+tag, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, m); code != 201 {
		t.Fatalf("manifest push to %s: %d", addr, code)
	}
	return digest.FromBytes(m)
}

// tags returns a region's tag -> digest map of repo, read locally.
func tags(t *testing.T, addr, repo string) (map[string]string, error) {
	resp, err := http.Get("http://" + addr + "/v2/" + repo + "/tags/list")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list struct{ Tags []string }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&list) != nil {
		return nil, fmt.Errorf("tags of %s at %s: %d", repo, addr, resp.StatusCode)
	}
	out := map[string]string{}
	for _, tag := range list.Tags {
		_, h := status(t, "HEAD", "http://"+addr+"/v2/"+repo+"/manifests/"+tag, nil, nil)
		out[tag] = h.Get("Docker-Content-Digest")
	}
	return out, nil
}

func converged(t *testing.T, regions map[string]*server, repo string, want map[string]string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var bad []string
		for name, s := range regions {
			got, err := tags(t, s.addr, repo)
			if err != nil || fmt.Sprint(sortedMap(got)) != fmt.Sprint(sortedMap(want)) {
				bad = append(bad, fmt.Sprintf("%s has %d of %d tags (%v)", name, len(got), len(want), err))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged within %s: %s", within, strings.Join(bad, "; "))
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}
}

func sortedMap(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// TestInvariant8Kill9OfARegionLosesNothing kills westeurope with SIGKILL
// while it replicates a stream of pushes, and eastus (the origin) the
// instant a 201 arrives; after restarts every acknowledged push is in every
// region.
func TestInvariant8Kill9OfARegionLosesNothing(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope", "southeastasia")
	east, west := regions["eastus"], regions["westeurope"]
	want := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 40 {
			tag := fmt.Sprintf("t%02d", i)
			d := pushImage(t, east.addr, "kill/app", tag, tag)
			mu.Lock()
			want[tag] = d.String()
			mu.Unlock()
		}
	})
	// Kill westeurope once some of those pushes have replicated into it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := tags(t, west.addr, "kill/app")
		if len(got) >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a bounded wait
	}
	west.kill9()
	wg.Wait()
	west.start()

	// Kill the origin the instant it acknowledges a push.
	d := pushImage(t, east.addr, "kill/app", "last", "last")
	east.kill9()
	want["last"] = d.String()
	east.start()

	converged(t, regions, "kill/app", want, 60*time.Second)
}

func TestImageStatusAndWait(t *testing.T) {
	regions := startRegions(t, "eastus", "westeurope")
	east := regions["eastus"]
	d := pushImage(t, east.addr, "cli/app", "v1", "cli")
	out := run(t, georegBin, "wait", east.addr+"/cli/app:v1", "--region", "westeurope", "--timeout", "60s")
	if !strings.Contains(out, "pullable in westeurope") {
		t.Fatalf("wait: %s", out)
	}
	var st struct {
		Digest   string
		Complete bool
		Regions  []struct{ Name, State string }
	}
	js := run(t, georegBin, "image", "status", east.addr+"/cli/app:v1", "--output", "json")
	if err := json.Unmarshal([]byte(js), &st); err != nil || st.Digest != d.String() || len(st.Regions) != 2 {
		t.Fatalf("status: %v %s", err, js)
	}
	// Acks travel by feed: eastus learns westeurope has it shortly after.
	deadline := time.Now().Add(30 * time.Second)
	for !st.Complete && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
		js = run(t, georegBin, "image", "status", east.addr+"/cli/app:v1", "--output", "json")
		_ = json.Unmarshal([]byte(js), &st)
	}
	if !st.Complete {
		t.Fatalf("eastus never learned westeurope holds the image: %s", js)
	}
	out, err := runErr(t, georegBin, "wait", east.addr+"/cli/app:nope", "--region", "westeurope", "--timeout", "1s")
	if err == nil || !strings.Contains(out, "timed out after 1s") {
		t.Fatalf("wait for a missing tag: %v %s", err, out)
	}
}
