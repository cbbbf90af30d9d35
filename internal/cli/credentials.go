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
	"strings"
	"time"

	"github.com/georeg/georeg/internal/ocierr"
)

// New returns a client of the registry at base that sends the credentials
// `georeg login` (or `docker login`) stored for its host, if any.
func New(base string, timeout time.Duration) *Client {
	base = NormalizeRegistry(base)
	c := &Client{Base: base, HTTP: &http.Client{Timeout: timeout}}
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
func Login(ctx context.Context, base, user, password string) (path, helper string, err error) {
	base = NormalizeRegistry(base)
	c := &Client{Base: base, HTTP: &http.Client{Timeout: 30 * time.Second}, User: user, Password: password}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/oauth2/token", nil)
	if err != nil {
		return "", "", err
	}
	req.SetBasicAuth(user, password)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", "", explain(base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", ocierr.Read(resp)
	}
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
	auths[host(base)] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
	// With a credential helper for the host (credHelpers) or for every
	// host (credsStore), docker reads the helper, not auths: say so.
	if helpers, _ := doc["credHelpers"].(map[string]any); helpers[host(base)] != nil {
		helper = fmt.Sprint(helpers[host(base)])
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
