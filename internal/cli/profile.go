package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/georeg/georeg/internal/tlsconf"
)

// Profile is what `georeg login` remembers for the commands after it, as
// `az acr login` does: the registry (URL and scheme) they ask by default,
// the CA that signs its certificates, and every endpoint the login
// covers (the front door and each region's own).
type Profile struct {
	Registry string   `json:"registry"`
	CAFile   string   `json:"caFile,omitempty"`
	Hosts    []string `json:"hosts,omitempty"` // host:port of each endpoint
	// Names are registries saved under a name (`georeg login URL
	// --save-as NAME`): --registry NAME asks NAME's URL.
	Names map[string]string `json:"names,omitempty"`
}

// ProfilePath is $GEOREG_CONFIG_DIR/profile.json, else georeg/profile.json
// under the user's configuration directory.
func ProfilePath() (string, error) {
	if dir := os.Getenv("GEOREG_CONFIG_DIR"); dir != "" {
		return filepath.Join(dir, "profile.json"), nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "georeg", "profile.json"), nil
}

// LoadProfile returns the saved profile; the zero Profile when there is
// none.
func LoadProfile() (Profile, error) {
	var p Profile
	path, err := ProfilePath()
	if err != nil {
		return p, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// SaveProfile writes p for the commands to come.
func SaveProfile(p Profile) error {
	path, err := ProfilePath()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

// Registry returns the registry commands ask when --registry is not
// given: the one of the last login, else the local `georeg up` door.
func Registry() string {
	if p, err := LoadProfile(); err == nil && p.Registry != "" {
		return p.Registry
	}
	return DefaultRegistry
}

// covers reports whether the profile's login covers base.
func (p Profile) covers(base string) bool {
	h := host(base)
	return h == host(p.Registry) || slices.Contains(p.Hosts, h)
}

// transport trusts, besides the system's roots, the CA in caFile ("":
// the system's only).
func transport(caFile string) (http.RoundTripper, error) {
	tc, err := tlsconf.Client(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	if tc == nil {
		return http.DefaultTransport, nil
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tc
	return t, nil
}

// localCA is where `georeg up --tls` keeps its CA when run here with its
// default data directory: a login to a loopback HTTPS registry without
// --ca-file trusts it.
const localCA = "georeg-data/tls/ca.pem"

// SaveName remembers registry base under name, for --registry NAME.
func SaveName(name, base string) error {
	if !savedName.MatchString(name) {
		return fmt.Errorf("--save-as %q: a name is lower-case letters, digits and '-', starting with a letter (a host with a dot or a port is a host)", name)
	}
	p, err := LoadProfile()
	if err != nil {
		return err
	}
	if p.Names == nil {
		p.Names = map[string]string{}
	}
	p.Names[name] = NormalizeRegistry(base)
	return SaveProfile(p)
}

// savedName is what a saved registry name looks like: one label, no dot,
// no port, so it never reads as a host.
var savedName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// lookupName returns the registry saved under name, if any.
func lookupName(name string) (string, bool) {
	if !savedName.MatchString(name) || name == "localhost" {
		return "", false
	}
	p, err := LoadProfile()
	if err != nil {
		return "", false
	}
	base, ok := p.Names[name]
	return base, ok
}
