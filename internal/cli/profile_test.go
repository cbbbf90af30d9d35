package cli

import "testing"

// TestASavedNameIsARegistryAndNothingElseIs: --registry NAME asks the
// registry saved under NAME; a host, a host:port or a URL is read as
// before; an unknown name is a host; a name that could be a host is
// refused as a name.
func TestASavedNameIsARegistryAndNothingElseIs(t *testing.T) {
	t.Setenv("GEOREG_CONFIG_DIR", t.TempDir())
	if err := SaveName("prod", "https://registry.example.com:8443/"); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"prod":                    "https://registry.example.com:8443",
		"staging":                 "https://staging",
		"127.0.0.1:5000":          "http://127.0.0.1:5000",
		"localhost":               "http://localhost",
		"http://prod":             "http://prod",
		"registry.example.com":    "https://registry.example.com",
		"https://127.0.0.1:5000/": "https://127.0.0.1:5000",
	} {
		if got := NormalizeRegistry(in); got != want {
			t.Errorf("--registry %s: %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"prod.example", "prod:5000", "Prod", ""} {
		if err := SaveName(bad, "https://x"); err == nil {
			t.Errorf("saved %q as a name", bad)
		}
	}
}
