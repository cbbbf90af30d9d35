package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestKill9DuringARestoreLosesNothing: with soft delete on, an image with
// eight tags is deleted and restored, and the node is killed with SIGKILL
// at a different moment of the restore in each round. After each restart
// the manifest is live with every blob and all eight tags (a restore is
// one transaction), or still listed restorable, never neither and never
// in part; asked again then, the restore completes: every tag points at
// the image and every byte pulls.
func TestKill9DuringARestoreLosesNothing(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	base := "http://" + s.addr
	if code, _ := status(t, "PUT", base+"/_georeg/v1/policies/soft-delete", map[string]string{"Content-Type": "application/json"}, []byte(`{"status":"enabled","days":7}`)); code != 200 {
		t.Fatalf("soft delete on: %d", code)
	}
	tags := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for round, delay := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond} {
		repo := base + "/v2/crash/restore"
		layer := make([]byte, 128<<10)
		_, _ = rand.Read(layer)
		cfg := []byte(fmt.Sprintf(`{"round":%d}`, round))
		for _, b := range [][]byte{layer, cfg} {
			if code, _ := status(t, "POST", repo+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), nil, b); code != 201 {
				t.Fatalf("blob push: %d", code)
			}
		}
		m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
			digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer)))
		d := digest.FromBytes(m)
		roundTags := make([]string, len(tags))
		for i, tag := range tags {
			roundTags[i] = fmt.Sprintf("r%d-%s", round, tag)
			if code, _ := status(t, "PUT", repo+"/manifests/"+roundTags[i], map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, m); code != 201 {
				t.Fatalf("manifest push: %d", code)
			}
		}
		if code, _ := status(t, "DELETE", repo+"/manifests/"+d.String(), nil, nil); code != 202 {
			t.Fatalf("delete: %d", code)
		}
		restoreURL := base + "/_georeg/v1/repository/restore?name=crash/restore"
		body := []byte(fmt.Sprintf(`{"digest":%q,"force":true}`, d))
		var wg sync.WaitGroup
		wg.Go(func() {
			// Answered, refused or cut by the kill: any outcome is one of
			// those the checks below accept.
			req, _ := http.NewRequest("POST", restoreURL, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
		time.Sleep(delay)
		s.kill9()
		wg.Wait()
		s.start()

		live, _ := status(t, "GET", repo+"/manifests/"+d.String(), nil, nil)
		resp := httpDo(t, "GET", base+"/_georeg/v1/repository/deleted?name=crash/restore", nil, nil)
		var listed []struct {
			Digest string `json:"digest"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&listed)
		resp.Body.Close()
		restorable := false
		for _, l := range listed {
			restorable = restorable || l.Digest == d.String()
		}
		switch {
		case live == 200 && restorable:
			t.Fatalf("round %d (kill after %s): live and listed restorable at once", round, delay)
		case live == 200:
			checkPulls(t, repo, d, [][]byte{layer, cfg})
		case !restorable:
			t.Fatalf("round %d (kill after %s): neither live (%d) nor restorable: lost", round, delay, live)
		}
		if live == 200 {
			// One transaction: live means every tag is back.
			for _, tag := range roundTags {
				if code, h := status(t, "GET", repo+"/manifests/"+tag, nil, nil); code != 200 || h.Get("Docker-Content-Digest") != d.String() {
					t.Fatalf("round %d (kill after %s): live, but tag %s is %d %s: a restore in part", round, delay, tag, code, h.Get("Docker-Content-Digest"))
				}
			}
		} else if code, _ := status(t, "POST", restoreURL, map[string]string{"Content-Type": "application/json"}, body); code != 200 {
			t.Fatalf("round %d: the restore asked again: %d", round, code)
		}
		for _, tag := range roundTags {
			if code, h := status(t, "GET", repo+"/manifests/"+tag, nil, nil); code != 200 || h.Get("Docker-Content-Digest") != d.String() {
				t.Fatalf("round %d: tag %s after the restore: %d %s", round, tag, code, h.Get("Docker-Content-Digest"))
			}
		}
		checkPulls(t, repo, d, [][]byte{layer, cfg})
		t.Logf("round %d (kill after %s): %s", round, delay, map[bool]string{true: "restored before the kill", false: "restorable after it, restored again"}[live == 200])
	}
}

// checkPulls checks manifest d of repo and each of blobs pull whole.
func checkPulls(t *testing.T, repo string, d digest.Digest, blobs [][]byte) {
	t.Helper()
	if code, h := status(t, "GET", repo+"/manifests/"+d.String(), nil, nil); code != 200 || h.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("manifest %s: %d", d, code)
	}
	for _, b := range blobs {
		resp := httpDo(t, "GET", repo+"/blobs/"+digest.FromBytes(b).String(), nil, nil)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, b) {
			t.Fatalf("blob %s of a live manifest: %d (%s)", digest.FromBytes(b), resp.StatusCode, strings.TrimSpace(string(got[:min(len(got), 200)])))
		}
	}
}
