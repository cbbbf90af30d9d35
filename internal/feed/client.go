package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/georeg/georeg/internal/bounded"
	"github.com/georeg/georeg/internal/ocierr"
)

// Authorizer sets a request's credential for region to
// (peerauth.Signer), or says why it sends none.
type Authorizer interface {
	Authorize(ctx context.Context, req *http.Request, to string) error
}

// Client reads one peer's feed.
type Client struct {
	base string // the peer's endpoint, e.g. http://127.0.0.1:5002
	name string // the peer's region name
	auth Authorizer
	http *http.Client
	idle time.Duration // bounds every wait on the peer (bounded.Limits)
}

// NewClient returns a client for region name at base, authorized by auth.
// idle bounds how long any answer may keep it waiting without a byte (a
// long-poll waits its wait, plus idle).
func NewClient(base, name string, auth Authorizer, hc *http.Client, idle time.Duration) *Client {
	return &Client{base: base, name: name, auth: auth, http: hc, idle: idle}
}

// get sends an authorized GET of path to the peer, whose headers may take
// header, and returns its 200 response, or the peer's error.
func (c *Client) get(ctx context.Context, path string, header time.Duration) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if err := c.auth.Authorize(ctx, req, c.name); err != nil {
		return nil, err
	}
	resp, err := bounded.Do(c.http, req, bounded.Limits{Header: header, Idle: c.idle, MinProgress: bounded.PeerMinProgress})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		if f, err := strconv.ParseInt(resp.Header.Get(FloorHeader), 10, 64); err == nil && resp.StatusCode == http.StatusGone {
			return nil, &CompactedError{Peer: c.name, Floor: f}
		}
		return nil, fmt.Errorf("%s of %s: %w", path, c.base, ocierr.Read(resp))
	}
	return resp, nil
}

// CompactedError: the records asked for were compacted away in the
// peer's feed, through Floor.
type CompactedError struct {
	Peer  string
	Floor int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("%s's feed was compacted through %d", e.Peer, e.Floor)
}

// Stats asks how much of the peer's feed follows since.
func (c *Client) Stats(ctx context.Context, since int64) (*Stats, error) {
	resp, err := c.get(ctx, StatsPath+"?since="+strconv.FormatInt(since, 10), c.idle)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st Stats
	return &st, json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&st)
}

// Fetch returns the records after since, waiting up to wait for one: the
// answer may take wait plus the client's idle bound, and its body may not
// stall for longer than that bound.
func (c *Client) Fetch(ctx context.Context, since int64, limit int, wait time.Duration) (*Page, error) {
	q := url.Values{"since": {strconv.FormatInt(since, 10)}, "limit": {strconv.Itoa(limit)}, "wait": {wait.String()}}
	resp, err := c.get(ctx, Path+"?"+q.Encode(), wait+c.idle)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return ParsePage(resp.Body, since)
}
