package up_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/up"
)

// markedLayer is size random bytes with a marker every 4 KiB, which no
// stored object may contain.
func markedLayer(size int) []byte {
	layer := make([]byte, size)
	_, _ = rand.Read(layer)
	for i := 0; i+16 <= size; i += 4096 {
		copy(layer[i:], "PLAINTEXT-MARKER")
	}
	return layer
}

// TestAnEncryptedRegistryStoresNoPlaintext: the registry `georeg up
// --encrypt` runs (each region under a key file of its own), on the
// filesystem and, in the shared pass, on S3. An image whose 3 MiB layer
// carries a marker every 4 KiB, pushed to eastus, arrives whole in every
// region; no object any region stores holds the marker; the layer reads
// back through every region at random Range offsets as pushed. Then
// westeurope's key file is taken away: within seconds westeurope is not
// ready, its /readyz naming the key, and a westeurope client pulls the
// image through the front door (from another region); the file back,
// westeurope is ready again by itself.
func TestAnEncryptedRegistryStoresNoPlaintext(t *testing.T) {
	dir := t.TempDir()
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions(), FrontDoor: "127.0.0.1:0", Encrypt: true})
	east := reg.ByName["eastus"].URL
	layer := markedLayer(3<<20 + 4321)
	cfg := []byte(`{"encrypted":true}`)
	for _, b := range [][]byte{cfg, layer} {
		pushBlob(t, east, "secret/app", b)
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer)))
	if code, _, body := do(t, "PUT", east+"/v2/secret/app/manifests/v1", "application/vnd.oci.image.manifest.v1+json", m); code != 201 {
		t.Fatalf("manifest: %d %s", code, body)
	}
	img := image{manifest: digest.FromBytes(m), blobs: []digest.Digest{digest.FromBytes(cfg), digest.FromBytes(layer)}}
	for _, r := range reg.Regions {
		eventually(t, 30*time.Second, func() error { return holdsImage(t, reg, r.URL, "secret/app", "v1", img) })
	}
	for _, r := range reg.Regions {
		objects := storedObjects(t, dir, r.Name)
		if len(objects) < 2 {
			t.Fatalf("%s stores %d objects: want the image's blobs at least", r.Name, len(objects))
		}
		for key, data := range objects {
			if bytes.Contains(data, []byte("PLAINTEXT-MARKER")) {
				t.Fatalf("%s stores plaintext in %s", r.Name, key)
			}
		}
	}
	layerD := digest.FromBytes(layer)
	for _, r := range reg.Regions {
		for range 8 {
			from := mrand.IntN(len(layer))
			to := min(len(layer)-1, from+mrand.IntN(300_000))
			req, _ := http.NewRequest("GET", r.URL+"/v2/secret/app/blobs/"+layerD.String(), nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 206 || !bytes.Equal(got, layer[from:to+1]) {
				t.Fatalf("%s: bytes %d-%d: %d, %d bytes, or other bytes", r.Name, from, to, resp.StatusCode, len(got))
			}
		}
	}

	// westeurope's key goes away.
	west := reg.ByName["westeurope"].URL
	keyFile := up.KeyFile(dir, "westeurope")
	if err := os.Rename(keyFile, keyFile+".away"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(west + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || !strings.Contains(string(body), "encryption key") {
			return fmt.Errorf("westeurope's /readyz without its key file: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	client := newClientAt(t, reg.FrontDoor, "127.0.0.2") // westeurope's
	eventually(t, 30*time.Second, func() error {
		code, at, body := client.do("GET", "/v2/secret/app/blobs/"+layerD.String(), "", nil)
		if code != 200 || digest.FromBytes(body) != layerD || at == "westeurope" {
			return fmt.Errorf("a westeurope client's pull while its key is away: %d from %q", code, at)
		}
		return nil
	})
	if err := os.Rename(keyFile+".away", keyFile); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(west + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("westeurope's /readyz with its key file back: %d", resp.StatusCode)
		}
		return nil
	})
	client.routedTo("westeurope")
}
