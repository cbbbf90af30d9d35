package up_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/encryption"
	"github.com/georeg/georeg/internal/encryption/kmstest"
	"github.com/georeg/georeg/internal/region"
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

// TestARegionUnderAKMSPluginIsDrainedWhileItsKeyServiceIsDown:
// westeurope encrypts under a real KMS v2 plugin (cmd/georeg-kms-pkcs11
// over a SoftHSM2 token, on a Unix socket), the other regions under key
// files. An image pushed through the front door by an eastus client
// arrives whole in westeurope, which stores no plaintext of it. The
// plugin killed (its key cache set to 1 s), westeurope is not ready
// within seconds, naming the plugin; a westeurope client's pulls and
// pushes go to other regions and succeed. The plugin back, westeurope
// is ready by itself, holds what was pushed meanwhile (nothing lost),
// and the client is routed home. The key then rotated in the plugin
// (restarted under a new key label) and `rotate` asked of westeurope:
// its status names the new version, re-wraps every data key to it, and
// the images still pull there.
func TestARegionUnderAKMSPluginIsDrainedWhileItsKeyServiceIsDown(t *testing.T) {
	plugin := kmstest.Start(t, "kek-1")
	dir := t.TempDir()
	reg := runRegistry(t, up.Config{DataDir: dir, Regions: threeRegions(), FrontDoor: "127.0.0.1:0",
		Encryption: func(name string) encryption.Config {
			if name == "westeurope" {
				return encryption.Config{Provider: "kms", KMSSocket: plugin.Socket, KMSTimeout: time.Second, KeyCacheTTL: time.Second}
			}
			keyFile := up.KeyFile(dir, name)
			if err := encryption.CreateLocalKeys(keyFile); err != nil {
				t.Fatal(err)
			}
			return encryption.Config{Provider: "local", KeyFile: keyFile}
		}})
	west := reg.ByName["westeurope"].URL
	eastClient := newClientAt(t, reg.FrontDoor, "127.0.0.1")
	westClient := newClientAt(t, reg.FrontDoor, "127.0.0.2")
	westClient.routedTo("westeurope")
	layer := markedLayer(2<<20 + 17)
	cfg := []byte(`{"kms":1}`)
	m := eastClient.image("secret/kms", "v1", cfg, layer)
	img := image{manifest: digest.FromBytes(m), blobs: []digest.Digest{digest.FromBytes(cfg), digest.FromBytes(layer)}}
	eventually(t, 30*time.Second, func() error { return holdsImage(t, reg, west, "secret/kms", "v1", img) })
	for key, data := range storedObjects(t, dir, "westeurope") {
		if bytes.Contains(data, []byte("PLAINTEXT-MARKER")) {
			t.Fatalf("westeurope stores plaintext in %s", key)
		}
	}

	plugin.Stop()
	eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(west + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || !strings.Contains(string(body), "KMS plugin at "+plugin.Socket) {
			return fmt.Errorf("westeurope's /readyz with its KMS plugin down: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	eventually(t, 30*time.Second, func() error {
		code, at, body := westClient.do("GET", "/v2/secret/kms/blobs/"+digest.FromBytes(layer).String(), "", nil)
		if code != 200 || !bytes.Equal(body, layer) || at == "westeurope" {
			return fmt.Errorf("a westeurope client's pull while its KMS is down: %d from %q", code, at)
		}
		return nil
	})
	layer2 := markedLayer(1<<20 + 3)
	m2 := westClient.image("secret/kms", "v2", []byte(`{"kms":2}`), layer2)
	img2 := image{manifest: digest.FromBytes(m2), blobs: []digest.Digest{digest.FromBytes([]byte(`{"kms":2}`)), digest.FromBytes(layer2)}}

	plugin.Restart("kek-1")
	westClient.routedTo("westeurope")
	eventually(t, 30*time.Second, func() error { return holdsImage(t, reg, west, "secret/kms", "v2", img2) })

	plugin.Restart("kek-2") // the key rotated in the key service
	var st region.EncryptionStatus
	code, body := postJSON(t, west+"/_georeg/v1/encryption/rotate")
	if code != 200 || json.Unmarshal(body, &st) != nil || st.KeyVersion != "kek-2" {
		t.Fatalf("rotate: %d %s", code, body)
	}
	eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(west + "/_georeg/v1/encryption")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st region.EncryptionStatus
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		if st.RewrapPending != 0 || len(st.KeyVersionsInUse) != 1 || st.KeyVersionsInUse["kek-2"] != st.DataKeys {
			return fmt.Errorf("westeurope after the rotation: %+v", st)
		}
		return nil
	})
	for _, i := range []image{img, img2} {
		tag := "v1"
		if i.manifest == img2.manifest {
			tag = "v2"
		}
		if err := holdsImage(t, reg, west, "secret/kms", tag, i); err != nil {
			t.Fatal(err)
		}
	}
}

func postJSON(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
