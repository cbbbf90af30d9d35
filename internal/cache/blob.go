package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// EnsureBlob fetches blob d of repo from the upstream of the cache rule
// repo falls under, verified, and links it here: the last resort of a
// client's read of a blob of an on-demand cached repository that no
// region could provide (the regions that held it are down). ok false:
// repo falls under no rule.
func (p *Puller) EnsureBlob(ctx context.Context, repo string, d digest.Digest) (ok bool, err error) {
	m, src, auth, ok, err := p.upstreamOf(ctx, repo, d.String(), false)
	if !ok || err != nil {
		return ok, err
	}
	ref, isDigest := src.(name.Digest)
	if !isDigest {
		return true, fmt.Errorf("cache rule %s: %s is not a digest reference", m.Rule, src)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(p.http)}
	layer, err := remote.Layer(ref, opts...)
	if err != nil {
		return true, blobError(m, src, err)
	}
	size, err := layer.Size() // a HEAD: FetchBlob checks the bytes against it
	if err != nil {
		return true, blobError(m, src, err)
	}
	var fetched int64
	open := func(ctx context.Context, offset int64) (io.ReadCloser, error) {
		rc, err := layer.Compressed()
		if err != nil {
			return nil, err
		}
		if offset > 0 {
			if _, err := io.CopyN(io.Discard, rc, offset); err != nil {
				rc.Close()
				return nil, err
			}
		}
		return &countedBody{ReadCloser: rc, n: &fetched}, nil
	}
	_, err = p.region.FetchBlob(ctx, region.FetchStagingID(d), d, size, open, nil)
	p.region.CountTraffic(region.TrafficCacheUpstream, m.Rule, fetched)
	if err != nil {
		return true, blobError(m, src, err)
	}
	return true, p.region.LinkFetched(ctx, repo, d)
}

// blobError is upstreamError for a blob: one the upstream does not have
// is BLOB_UNKNOWN.
func blobError(m Match, src name.Reference, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return ocierr.BlobUnknown.Withf("cache rule %s: %s is in no region and not in the upstream", m.Rule, src)
	}
	return upstreamError(m, src, err)
}

// countedBody adds what is read through it to *n.
type countedBody struct {
	io.ReadCloser
	n *int64
}

func (c *countedBody) Read(b []byte) (int, error) {
	k, err := c.ReadCloser.Read(b)
	*c.n += int64(k)
	return k, err
}
