package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/georeg/georeg/internal/ocierr"
)

// New returns a client of the registry at base that sends the credentials
// `georeg login` (or `docker login`) stored for its host, if any.
func New(base string, timeout time.Duration) *Client {
	base = NormalizeRegistry(base)
	c := &Client{Base: base, HTTP: &http.Client{Timeout: timeout}}
	if p, err := LoadProfile(); err == nil && p.CAFile != "" && p.covers(base) {
		if rt, err := transport(p.CAFile); err == nil {
			c.HTTP.Transport = rt
		}
	}
	c.User, c.Password, _ = StoredCredentials(base)
	return c
}

// dockerConfig is the part of ~/.docker/config.json georeg reads and
// writes: basic credentials per registry host.
type dockerConfig struct {
	Auths map[string]struct {
		Auth string `json:"auth"`
	} `json:"auths"`
}

// ConfigPath is the docker config file: $DOCKER_CONFIG/config.json, else
// ~/.docker/config.json.
func ConfigPath() (string, error) {
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		return filepath.Join(dir, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// host returns the config key of a registry URL: host[:port].
func host(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return strings.TrimSuffix(base, "/")
}

// StoredCredentials returns the user and password stored for base's host.
func StoredCredentials(base string) (string, string, error) {
	path, err := ConfigPath()
	if err != nil {
		return "", "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	var cfg dockerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	h := host(base)
	for key, a := range cfg.Auths {
		if host(key) != h && key != h {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("%s: credentials of %s are not base64", path, key)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "", fmt.Errorf("%s: credentials of %s are not user:password", path, key)
		}
		return user, pass, nil
	}
	return "", "", errors.New("no stored credentials")
}

// Login checks user and password against the registry's token endpoint
// and stores them for base's host in the docker config (mode 0600),
// keeping every other entry and field of the file. It returns the file's
// path and, when the file names a credential helper that docker asks
// instead of that entry, the helper's name.
//
// caFile is the CA that signs the registry's certificate ("": the
// system's roots; for HTTPS on loopback, georeg up's CA under
// ./georeg-data when there is one). The registry, the CA and every
// region endpoint of the registry (asked of it; an admin may see them)
// are remembered (Profile): later commands ask that registry by default,
// and one login covers the front door and each region's own endpoint.
func Login(ctx context.Context, base, user, password, caFile string) (path, helper string, hosts []string, err error) {
	base = NormalizeRegistry(base)
	if caFile == "" && strings.HasPrefix(base, "https://") && loopbackHost(host(base)) {
		if _, err := os.Stat(localCA); err == nil {
			caFile = localCA
		}
	}
	if caFile != "" {
		if caFile, err = filepath.Abs(caFile); err != nil {
			return "", "", nil, err
		}
	}
	rt, err := transport(caFile)
	if err != nil {
		return "", "", nil, err
	}
	c := &Client{Base: base, HTTP: &http.Client{Timeout: 30 * time.Second, Transport: rt}, User: user, Password: password}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/oauth2/token", nil)
	if err != nil {
		return "", "", nil, err
	}
	req.SetBasicAuth(user, password)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", "", nil, explain(base, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", nil, ocierr.Read(resp)
	}
	// Every endpoint of the registry: the one logged in to, and each
	// region's, when the registry tells (it does to an admin).
	hosts = []string{host(base)}
	if regions, err := c.Regions(ctx); err == nil {
		for _, r := range regions.Regions {
			if h := host(r.Endpoint); h != "" && !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
	if path, helper, err = storeCredentials(hosts, user, password); err != nil {
		return "", "", nil, err
	}
	return path, helper, hosts, SaveProfile(Profile{Registry: base, CAFile: caFile, Hosts: hosts})
}

// storeCredentials writes user's credentials for each host into the
// docker config, and names the credential helper docker would ask
// instead, if the config names one.
func storeCredentials(hosts []string, user, password string) (path, helper string, err error) {
	path, err = ConfigPath()
	if err != nil {
		return "", "", err
	}
	doc := map[string]any{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &doc); err != nil {
			return "", "", fmt.Errorf("%s: %w", path, err)
		}
	}
	auths, _ := doc["auths"].(map[string]any)
	if auths == nil {
		auths = map[string]any{}
	}
	for _, h := range hosts {
		auths[h] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
	}
	// With a credential helper for the host (credHelpers) or for every
	// host (credsStore), docker reads the helper, not auths: say so.
	if helpers, _ := doc["credHelpers"].(map[string]any); helpers[hosts[0]] != nil {
		helper = fmt.Sprint(helpers[hosts[0]])
	} else if store, _ := doc["credsStore"].(string); store != "" {
		helper = store
	}
	doc["auths"] = auths
	b, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", err
	}
	return path, helper, os.WriteFile(path, b, 0o600)
}
