package replicate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/bounded"
	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/peerauth"
)

// errGone means the peer no longer holds what a record named: it was
// deleted after the record, and a later record says so.
var errGone = errors.New("gone from the peer")

// errPeer marks an error that arose on the peer's side of a request: it
// could not be reached, refused, answered an error, or its body broke
// off or stalled (plan.go: classify).
var errPeer = errors.New("from the peer")

// peerBody is a response body whose read errors are marked errPeer.
type peerBody struct{ io.ReadCloser }

func (b peerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", errPeer, err)
	}
	return n, err
}

// errDeleted means this region holds a delete of the object at least as
// new as the copy a peer offers: it is not fetched or stored (invariant 9).
var errDeleted = errors.New("deleted in this region")

// peerVersion reads the version a peer tells for what it serves
// (feed.VersionHeader); zero when it tells none.
func peerVersion(h http.Header) hlc.Version {
	v, err := hlc.ParseVersion(h.Get(feed.VersionHeader))
	if err != nil {
		return hlc.Version{}
	}
	return v
}

// source reads one peer: its feed and its content, over HTTP.
type source struct {
	name, base string
	signer     *peerauth.Signer
	http       *http.Client
	idle       time.Duration // bounds every wait on the peer (bounded.Limits)
	feed       *feed.Client
	applied    chan struct{}               // signalled when records of the peer apply (refreshStats)
	since      time.Time                   // when this region started following the peer
	window     atomic.Pointer[applyWindow] // the records of its feed being applied (applyPages)
	// rtt is the peer's measured round trip (an average of its small
	// requests' times to answer, in nanoseconds; 0: not measured yet).
	rtt atomic.Int64
}

// observeRTT adds one small request's time to answer to the peer's
// average (each new one weighs a quarter).
func (s *source) observeRTT(d time.Duration) {
	for {
		old := s.rtt.Load()
		next := int64(d)
		if old != 0 {
			next = old - old/4 + int64(d)/4
		}
		if s.rtt.CompareAndSwap(old, next) {
			return
		}
	}
}

// nearestFirst orders peers by their measured round trips, nearest
// first; peers not measured yet follow, in the order given (the
// configuration's). The slice given is not changed.
func nearestFirst(peers []*source) []*source {
	out := slices.Clone(peers)
	slices.SortStableFunc(out, func(a, b *source) int {
		ra, rb := a.rtt.Load(), b.rtt.Load()
		switch {
		case ra == 0 && rb == 0:
			return 0
		case ra == 0:
			return 1
		case rb == 0:
			return -1
		}
		return cmp.Compare(ra, rb)
	})
	return out
}

func newSource(p Peer, signer *peerauth.Signer, hc *http.Client, idle time.Duration) *source {
	base := strings.TrimSuffix(p.Endpoint, "/")
	return &source{name: p.Name, base: base, signer: signer, http: hc, idle: idle,
		feed: feed.NewClient(base, p.Name, signer, hc, idle), applied: make(chan struct{}, 1), since: time.Now()}
}

func (s *source) get(ctx context.Context, path string, header map[string]string) (*http.Response, error) {
	return s.request(ctx, http.MethodGet, path, header)
}

// request sends a request to the peer as a peer (with this region's
// token for it, so the peer answers from what it holds and never reads through
// itself) and returns a 200 or 206 response; errGone on 404. Its headers
// must arrive within the source's idle bound and its body keep moving
// (bounded.ErrStalled otherwise).
func (s *source) request(ctx context.Context, method, path string, header map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, nil)
	if err != nil {
		return nil, err
	}
	if err := s.signer.Authorize(ctx, req, s.name); err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", errPeer, s.name, path, err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := bounded.Do(s.http, req, bounded.Limits{Header: s.idle, Idle: s.idle, MinProgress: bounded.PeerMinProgress})
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", errPeer, s.name, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent:
		resp.Body = peerBody{resp.Body}
		return resp, nil
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		return nil, fmt.Errorf("%s%s: %w", s.name, path, errGone)
	default:
		defer resp.Body.Close()
		return nil, fmt.Errorf("%w: %s%s: %w", errPeer, s.name, path, ocierr.Read(resp))
	}
}

// fetchedManifest is a manifest as a peer served it.
type fetchedManifest struct {
	mediaType string
	payload   []byte
	version   hlc.Version // the peer's (peerVersion)
}

// manifest fetches manifest d of repo: its media type, bytes and version.
func (s *source) manifest(ctx context.Context, repo string, d digest.Digest, limit int64) (fetchedManifest, error) {
	resp, err := s.get(ctx, "/v2/"+repo+"/manifests/"+d.String(),
		map[string]string{"Accept": strings.Join(oci.ManifestMediaTypes, ", ")})
	if err != nil {
		return fetchedManifest{}, err
	}
	defer resp.Body.Close()
	payload, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fetchedManifest{}, err
	}
	if int64(len(payload)) > limit {
		return fetchedManifest{}, fmt.Errorf("manifest %s from %s is over %d bytes", d, s.name, limit)
	}
	return fetchedManifest{resp.Header.Get("Content-Type"), payload, peerVersion(resp.Header)}, nil
}

// blob returns blob d of repo from offset on.
func (s *source) blob(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, error) {
	return s.blobVia(ctx, repo, d, offset, nil)
}

// relayedBlob is blob, asking the peer to relay it from origin's feed
// (feed.RelayOriginHeader) when it does not hold it.
func (s *source) relayedBlob(ctx context.Context, origin, repo string, d digest.Digest, size, offset int64) (io.ReadCloser, error) {
	return s.blobVia(ctx, repo, d, offset, map[string]string{feed.RelayOriginHeader: origin, feed.RelaySizeHeader: strconv.FormatInt(size, 10)})
}

func (s *source) blobVia(ctx context.Context, repo string, d digest.Digest, offset int64, h map[string]string) (io.ReadCloser, error) {
	if h == nil {
		h = map[string]string{}
	}
	if offset > 0 {
		h["Range"] = fmt.Sprintf("bytes=%d-", offset)
	}
	resp, err := s.get(ctx, "/v2/"+repo+"/blobs/"+d.String(), h)
	if err != nil {
		return nil, err
	}
	if offset > 0 && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, fmt.Errorf("blob %s from %s: asked for bytes from %d, got status %d", d, s.name, offset, resp.StatusCode)
	}
	return resp.Body, nil
}

// blobFrom opens blob d of repo from its start and returns its size (the
// answer's Content-Length): one round trip where a size and then the
// bytes would take two.
func (s *source) blobFrom(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	resp, err := s.get(ctx, "/v2/"+repo+"/blobs/"+d.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	if resp.ContentLength < 0 {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("blob %s from %s: no Content-Length", d, s.name)
	}
	return resp.Body, resp.ContentLength, nil
}
