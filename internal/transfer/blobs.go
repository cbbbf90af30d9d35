package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/region"
)

// copyBlobs copies blobs (digest -> size) a few at a time: an image's
// layers arrive in the time of the largest, not of their sum, and a round
// trip each is not paid in turn.
func (im *Importer) copyBlobs(ctx context.Context, job *Job, repo name.Repository, target string, blobs map[digest.Digest]int64, opts []remote.Option) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(blobJobs)
	for d, size := range blobs {
		g.Go(func() error { return im.copyBlob(gctx, job, repo, target, d, size, opts) })
	}
	return g.Wait()
}

// copyBlob makes blob d present in target: linked when its bytes are in
// this region already, else fetched from the source, verified as it
// streams.
func (im *Importer) copyBlob(ctx context.Context, job *Job, repo name.Repository, target string, d digest.Digest, size int64, opts []remote.Option) error {
	done := func(reused bool) {
		im.update(func() {
			job.BlobsDone++
			job.BytesDone += size
			if reused {
				job.Reused++
			}
		})
	}
	if ok, err := im.region.HasBlob(ctx, target, d); err != nil || ok {
		if ok {
			// An old link no manifest uses yet: garbage collection keeps
			// it for a grace period from now, as for a push that checked
			// it and skipped its upload.
			if err := im.region.TouchBlob(ctx, target, d); err != nil {
				return err
			}
			done(true)
		}
		return err
	}
	if adopted, err := im.adopt(ctx, target, d); err != nil || adopted {
		if adopted {
			done(true)
		}
		return err
	}
	// One fetch per digest in the region (region.FetchBlob): a client or
	// peer that asked for the blob first (region.FetchOffered) leads it,
	// and this waits for it.
	if _, err := im.region.FetchBlob(ctx, region.FetchStagingID(d), d, size, im.opener(job, repo, d, opts), nil); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("blob %s: the source closed the transfer early", d)
		}
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if err := im.region.LinkFetched(ctx, target, d); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	im.update(func() { job.BlobsDone++ })
	return nil
}

// adopt links blob d in target when its bytes are in the region's
// content store already. It leases the blob before looking (LeaseToLink),
// so the link does not look again inside its transaction (on S3 a HEAD
// under the region's lock): found under the lease, no sweep deletes the
// bytes before the link. A link that fails is not an error: the blob is
// fetched instead.
func (im *Importer) adopt(ctx context.Context, target string, d digest.Digest) (bool, error) {
	lease, release := im.region.LeaseToLink(ctx, d)
	defer release()
	if _, ok, err := im.region.HasContent(ctx, d); err != nil || !ok {
		return false, err
	}
	return im.region.AdoptBlob(ctx, target, d, lease) == nil, nil
}

// opener returns how to read blob d from the source, from an offset (a
// fetch resumed: the bytes before it are read and dropped, the source
// being asked as go-containerregistry asks it), counting the bytes into
// job.
func (im *Importer) opener(job *Job, repo name.Repository, d digest.Digest, opts []remote.Option) func(ctx context.Context, offset int64) (io.ReadCloser, error) {
	return func(ctx context.Context, offset int64) (io.ReadCloser, error) {
		layer, err := remote.Layer(repo.Digest(d.String()), opts...)
		if err != nil {
			return nil, err
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, err
		}
		counted := &progressReader{r: rc, add: func(n int64) { im.update(func() { job.BytesDone += n; job.BytesFetched += n }) }}
		if offset > 0 {
			if _, err := io.CopyN(io.Discard, counted, offset); err != nil {
				rc.Close()
				return nil, err
			}
		}
		return struct {
			io.Reader
			io.Closer
		}{counted, rc}, nil
	}
}

// progressReader counts bytes as they pass.
type progressReader struct {
	r   io.Reader
	n   int64
	add func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.add(int64(n))
	return n, err
}
