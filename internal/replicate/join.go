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

	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/peerauth"
)

// Join makes region self, reached at endpoint, a region of the registry
// that serves at url (any region of it), as `georeg serve --join` does:
// it has that region prove its name (peerauth: it must hold the same
// replication secret), asks it for the registry's members, registers self
// there as a replica (a setting that replicates, so every region follows
// self) and returns the members as self's peers, the joined region first:
// self backfills from all of them and is Ready only once it caught up
// with each. The registry refuses self's token (UNAUTHORIZED) unless both
// share one replication secret. Every call is bounded by timeout.
func Join(ctx context.Context, client *http.Client, url string, signer *peerauth.Signer, self, endpoint string, timeout time.Duration) ([]Peer, error) {
	url = strings.TrimSuffix(url, "/")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The joined region proves it holds the registry's secret before it
	// is sent anything (the management API may be open, with auth off).
	joined, err := signer.Identify(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w (the joining region and the registry must share one replication secret)", url, err)
	}
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
		if err := signer.Authorize(ctx, req, joined); err != nil {
			return err
		}
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
	// The registry's members as that region knows them: itself, its
	// configured peers, and registered regions that have been Ready. All
	// become this region's peers, so it waits for each before it says it
	// is Ready — not only for the one it joined through, whose feed holds
	// only what that region originated.
	var regions []struct {
		Name     string `json:"name"`
		Endpoint string `json:"endpoint"`
		Source   string `json:"source"`
		State    string `json:"state"`
	}
	if err := call(http.MethodGet, "/_georeg/v1/replications", nil, &regions); err != nil {
		return nil, err
	}
	for _, r := range regions {
		if r.Source == "self" && r.Name == self {
			return nil, fmt.Errorf("join %s: that is region %s, this region's own name; give this region another name", url, self)
		}
	}
	var peers []Peer
	for _, r := range regions {
		switch {
		case r.Name == self:
		case r.Source == "self":
			peers = append([]Peer{{Name: r.Name, Endpoint: url}}, peers...)
		case r.Source == "config" || r.State == StateReady:
			peers = append(peers, Peer{Name: r.Name, Endpoint: r.Endpoint})
		}
	}
	if len(peers) == 0 || peers[0].Endpoint != url {
		return nil, fmt.Errorf("join %s: it does not say which region it is", url)
	}
	var out any
	if err := call(http.MethodPut, "/_georeg/v1/replications/"+self, map[string]any{"endpoint": endpoint}, &out); err != nil {
		return nil, err
	}
	return peers, nil
}
