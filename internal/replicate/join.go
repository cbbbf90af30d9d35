package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/ocierr"
)

// Join makes region self, reached at endpoint, a region of the registry
// that serves at url (any region of it), as `georeg serve --join` does:
// it asks that region its name, registers self there as a replica (a
// setting that replicates, so every region follows self) and returns that
// region as the peer self starts from; from it self learns every other
// region and backfills. It presents self's peer credential, so the
// registry refuses it (UNAUTHORIZED) unless both share one replication
// secret. Every call is bounded by timeout.
func Join(ctx context.Context, client *http.Client, url, secret, self, endpoint string, timeout time.Duration) (Peer, error) {
	url = strings.TrimSuffix(url, "/")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	call := func(method, path string, body, out any) error {
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			if err != nil {
				return err
			}
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, url+path, rd)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+feed.Credential(secret, self))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("join %s: %w", url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("join %s: %s %s: %w (the joining region and the registry must share one replication secret)", url, method, path, ocierr.Read(resp))
		}
		return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
	}
	// The feed answers peers only: the secret is checked before anything
	// is registered (the management API may be open, with auth off).
	var page any
	if err := call(http.MethodGet, "/_georeg/v1/feed?since=0&limit=1", nil, &page); err != nil {
		return Peer{}, err
	}
	var regions struct {
		Self string `json:"self"`
	}
	if err := call(http.MethodGet, "/_georeg/v1/regions", nil, &regions); err != nil {
		return Peer{}, err
	}
	if regions.Self == "" {
		return Peer{}, fmt.Errorf("join %s: it does not say which region it is", url)
	}
	if regions.Self == self {
		return Peer{}, fmt.Errorf("join %s: that is region %s, this region's own name; give this region another name", url, self)
	}
	var out any
	if err := call(http.MethodPut, "/_georeg/v1/replications/"+self, map[string]any{"endpoint": endpoint}, &out); err != nil {
		return Peer{}, err
	}
	return Peer{Name: regions.Self, Endpoint: url}, nil
}
