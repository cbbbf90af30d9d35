package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/georeg/georeg/internal/replicate"
)

func TestParseAndValidate(t *testing.T) {
	t.Run("a file sets fields over the defaults", func(t *testing.T) {
		c := Default()
		if err := Parse([]byte("region:\n  name: westeurope\nhttp:\n  listen: 127.0.0.1:6000\n"), &c); err != nil {
			t.Fatal(err)
		}
		if c.Region.Name != "westeurope" || c.HTTP.Listen != "127.0.0.1:6000" || c.Region.DataDir != "./data" {
			t.Fatalf("got %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an empty file keeps the defaults", func(t *testing.T) {
		c := Default()
		if err := Parse(nil, &c); err != nil || !reflect.DeepEqual(c, Default()) {
			t.Fatalf("got %+v, %v", c, err)
		}
	})
	t.Run("an unknown field is an error, not a silent default", func(t *testing.T) {
		c := Default()
		if err := Parse([]byte("region:\n  nmae: x\n"), &c); err == nil || !strings.Contains(err.Error(), "nmae") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("every problem is reported with its field path", func(t *testing.T) {
		c := Default()
		c.Region.Name = "East US"
		c.Region.DataDir = ""
		c.HTTP.Listen = "nowhere"
		c.HTTP.BlobCopy = "teleport"
		c.Log.Level = "loud"
		c.Log.Format = "xml"
		err := c.Validate()
		for _, field := range []string{"region.name", "region.dataDir", "http.listen", "http.blobCopy", "log.level", "log.format"} {
			if err == nil || !strings.Contains(err.Error(), field) {
				t.Errorf("no error for %s in: %v", field, err)
			}
		}
	})
}

// TestWithAuthTheReplicationSecretIsStrong: with auth on, whoever holds
// the replication secret can join the registry, so a short one is
// refused; without auth any is accepted.
func TestWithAuthTheReplicationSecretIsStrong(t *testing.T) {
	c := Default()
	c.Replication.Secret = strings.Repeat("x", 31)
	if err := c.Validate(); err != nil {
		t.Fatalf("without auth: %v", err)
	}
	c.Auth.Enabled = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "at least 32 characters") {
		t.Fatalf("a 31-character secret with auth: %v", err)
	}
	c.HTTP.TLSCert, c.HTTP.TLSKey = "tls.crt", "tls.key"
	c.Replication.Secret += "x"
	if err := c.Validate(); err != nil {
		t.Fatalf("a 32-character secret with auth: %v", err)
	}
}

// TestWithAuthRegionsTalkOverTLS: with auth on, a peer or this region's
// endpoint over plain HTTP is refused, unless the configuration says it
// is a test rig (replication.insecurePeers).
func TestWithAuthRegionsTalkOverTLS(t *testing.T) {
	c := Default()
	c.Auth.Enabled = true
	c.Replication.Secret = strings.Repeat("s", 32)
	c.Replication.Peers = []replicate.Peer{{Name: "westeurope", Endpoint: "http://10.0.0.2:5001"}}
	err := c.Validate()
	for _, field := range []string{"replication.peers[0].endpoint", "http.tlsCert"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("no error for %s in: %v", field, err)
		}
	}
	c.Replication.Peers[0].Endpoint = "https://10.0.0.2:5001"
	c.Replication.Endpoint = "https://10.0.0.1:5001"
	if err := c.Validate(); err != nil {
		t.Fatalf("https everywhere: %v", err)
	}
	c.Replication.Endpoint, c.Replication.Peers[0].Endpoint = "http://10.0.0.1:5001", "http://10.0.0.2:5001"
	c.Replication.InsecurePeers = true
	if err := c.Validate(); err != nil {
		t.Fatalf("a test rig: %v", err)
	}
}

// TestEnvironmentReferencesAreValuesNotSyntax: ${NAME} in a value is the
// variable's value, kept whole whatever it holds (YAML syntax in a
// password); a reference in a comment is ignored; an unset one is named.
func TestEnvironmentReferencesAreValuesNotSyntax(t *testing.T) {
	t.Setenv("GEOREG_TEST_DSN_PASSWORD", `p#ss: "word`)
	dir := t.TempDir()
	file := filepath.Join(dir, "region.yaml")
	yamlText := "# not a reference: ${GEOREG_TEST_UNSET_IN_A_COMMENT}\n" +
		"region:\n  name: eastus\n  dataDir: " + dir + "\n  metadata:\n    driver: postgres\n" +
		"    dsn: postgres://georeg:${GEOREG_TEST_DSN_PASSWORD}@db:5432/georeg\n  maxManifestSize: 1048576\n"
	if err := os.WriteFile(file, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if c.Region.MaxManifestSize != 1<<20 {
		t.Fatalf("a number beside a reference: %d", c.Region.MaxManifestSize)
	}
	if want := `postgres://georeg:p#ss: "word@db:5432/georeg`; c.Region.Metadata.DSN != want {
		t.Fatalf("dsn %q, want %q", c.Region.Metadata.DSN, want)
	}
	if err := os.WriteFile(file, []byte("region:\n  name: ${GEOREG_TEST_NOT_SET}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), "GEOREG_TEST_NOT_SET") {
		t.Fatalf("an unset variable: %v", err)
	}
}
