package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/encryption"
	"github.com/georeg/georeg/internal/region"
)

// TestKill9WhileEncryptingInPlaceOrRotatingLosesNothing: a region that
// stored 24 blobs of 1 MiB in plaintext (each with a marker every 4 KiB)
// restarts with encryption on, and is killed with SIGKILL while it
// encrypts them in place, at a later moment each round (each round on a
// fresh copy of the plaintext data) until a kill lands mid-way: some
// blobs encrypted, some not. After that restart every blob pulls whole
// with its digest, and the job finishes by itself: `georeg encryption
// status` reaches 0 plaintext blobs and no stored file holds the
// marker. Then a rotation (`georeg encryption rotate`), the process
// killed the moment it answers: after the restart the new key version
// is current, the data keys are re-wrapped to it (status: 0 pending, one
// version in use), and every blob still pulls.
func TestKill9WhileEncryptingInPlaceOrRotatingLosesNothing(t *testing.T) {
	plainData := filepath.Join(t.TempDir(), "plain")
	if err := os.MkdirAll(plainData, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, plainData)
	base := "http://" + s.addr + "/v2/secret/app"
	var blobs []digest.Digest
	for range 24 {
		b := make([]byte, 1<<20)
		_, _ = rand.Read(b)
		for i := 0; i+16 <= len(b); i += 4096 {
			copy(b[i:], "PLAINTEXT-MARKER")
		}
		d := digest.FromBytes(b)
		if code, _ := status(t, "POST", base+"/blobs/uploads/?digest="+d.String(), nil, b); code != 201 {
			t.Fatalf("blob push: %d", code)
		}
		blobs = append(blobs, d)
	}
	s.kill9()

	keyFile := filepath.Join(t.TempDir(), "keys.json")
	if err := encryption.CreateLocalKeys(keyFile); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "georeg.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, "region:\n  encryption:\n    provider: local\n    keyFile: %s\n", keyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	countForms := func(data string) (plain, enc int) {
		_ = filepath.Walk(filepath.Join(data, "content", "blobs"), func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			if strings.HasSuffix(p, ".enc") {
				enc++
			} else {
				plain++
			}
			return nil
		})
		return plain, enc
	}
	pullsAll := func(addr string) {
		t.Helper()
		for _, d := range blobs {
			resp := httpDo(t, "GET", "http://"+addr+"/v2/secret/app/blobs/"+d.String(), nil, nil)
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || digest.FromBytes(got) != d {
				t.Fatalf("blob %s after the kill: %d, %d bytes", d, resp.StatusCode, len(got))
			}
		}
	}

	var enc *server
	delay := 5 * time.Millisecond
	for round := 0; ; round++ {
		if round == 8 {
			t.Fatalf("no kill landed while blobs were being encrypted in 8 rounds (last delay %s)", delay)
		}
		data := filepath.Join(t.TempDir(), fmt.Sprint("enc", round))
		if out, err := exec.Command("cp", "-a", plainData, data).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		enc = &server{t: t, addr: freeAddr(t), data: data}
		enc.args = []string{"--config", cfgFile, "--listen", enc.addr, "--data", data, "--region", "eastus", "--log-level", "warn"}
		enc.start()
		time.Sleep(delay)
		enc.kill9()
		plain, encrypted := countForms(data)
		t.Logf("round %d: killed %s after ready: %d blobs in plaintext, %d encrypted", round, delay, plain, encrypted)
		enc.start() // the same data, encryption on
		t.Cleanup(enc.kill)
		pullsAll(enc.addr)
		if plain > 0 && plain < len(blobs) {
			break // a kill mid-way, and nothing lost
		}
		enc.kill9()
		if plain == len(blobs) {
			delay *= 2
		} else {
			delay /= 2
		}
	}

	encStatus := func() region.EncryptionStatus {
		t.Helper()
		out := run(t, georegBin, "encryption", "status", "--registry", "http://"+enc.addr, "-o", "json")
		var st region.EncryptionStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("encryption status: %v\n%s", err, out)
		}
		return st
	}
	waitFor(t, 30*time.Second, func() error {
		if st := encStatus(); !st.Enabled || st.PlaintextBlobs != 0 || st.LastPass.IsZero() {
			return fmt.Errorf("encryption status: %+v", st)
		}
		if plain, _ := countForms(enc.data); plain != 0 {
			return fmt.Errorf("%d blobs still stored in plaintext", plain)
		}
		return nil
	})
	_ = filepath.Walk(enc.data, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte("PLAINTEXT-MARKER")) {
			t.Errorf("%s holds plaintext", p)
		}
		return nil
	})
	pullsAll(enc.addr)
	before := encStatus()
	if before.KeyVersion != "local-1" || before.KeyVersionsInUse["local-1"] != 1 {
		t.Fatalf("before the rotation: %+v", before)
	}

	// A rotation, killed the moment it answered.
	out := run(t, georegBin, "encryption", "rotate", "--registry", "http://"+enc.addr, "-o", "json")
	enc.kill9()
	var rotated region.EncryptionStatus
	if err := json.Unmarshal([]byte(out), &rotated); err != nil || rotated.KeyVersion != "local-2" {
		t.Fatalf("rotate: %v %s", err, out)
	}
	enc.start()
	waitFor(t, 30*time.Second, func() error {
		st := encStatus()
		if st.KeyVersion != "local-2" || st.RewrapPending != 0 || len(st.KeyVersionsInUse) != 1 || st.KeyVersionsInUse["local-2"] != 2 {
			return fmt.Errorf("after the rotation: %+v", st)
		}
		return nil
	})
	pullsAll(enc.addr)
	// New data goes under the new data key; the old one still reads.
	b := []byte("pushed after the rotation")
	d := digest.FromBytes(b)
	if code, _ := status(t, "POST", "http://"+enc.addr+"/v2/secret/app/blobs/uploads/?digest="+d.String(), nil, b); code != 201 {
		t.Fatalf("push after the rotation: %d", code)
	}
	resp := httpDo(t, http.MethodGet, "http://"+enc.addr+"/v2/secret/app/blobs/"+d.String(), nil, nil)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, b) {
		t.Fatalf("a blob pushed after the rotation: %d %q", resp.StatusCode, got)
	}
}

// TestConfigExportRecordsEncryption: `georeg config export` of a region
// that encrypts at rest says so and with which provider, and holds no
// key, key file path or key material; `config apply` of it to a region
// that does not encrypt is refused, naming the setting, and goes through
// with --allow-unencrypted.
func TestConfigExportRecordsEncryption(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys.json")
	if err := encryption.CreateLocalKeys(keyFile); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "georeg.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, "region:\n  encryption:\n    provider: local\n    keyFile: %s\n", keyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "enc")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	src := &server{t: t, addr: freeAddr(t), data: data}
	src.args = []string{"--config", cfgFile, "--listen", src.addr, "--data", data, "--region", "eastus", "--log-level", "warn"}
	src.start()
	t.Cleanup(src.kill)
	dst := startServer(t, t.TempDir())

	out := run(t, georegBin, "config", "export", "--registry", "http://"+src.addr)
	if !strings.Contains(out, "encryption:\n  enabled: true\n  provider: local\n") {
		t.Fatalf("the export does not record the encryption:\n%s", out)
	}
	keys, _ := os.ReadFile(keyFile)
	if strings.Contains(out, keyFile) || strings.Contains(out, "keys.json") || len(keys) == 0 {
		t.Fatalf("the export names the key file:\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "registry.yaml")
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	refused, err := runErr(t, georegBin, "config", "apply", "-f", file, "--registry", "http://"+dst.addr)
	if err == nil || !strings.Contains(refused, "encrypts at rest") || !strings.Contains(refused, "region.encryption") {
		t.Fatalf("apply to an unencrypted region: %v\n%s", err, refused)
	}
	run(t, georegBin, "config", "apply", "-f", file, "--registry", "http://"+dst.addr, "--allow-unencrypted")
}
