package region

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// StatBlob returns the size of blob d in repo, or BLOB_UNKNOWN.
func (r *Region) StatBlob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	size, err := r.db.BlobSize(ctx, repo, d)
	if isNotFound(err) {
		return 0, ocierr.BlobUnknown.WithDetail(
			fmt.Sprintf("blob %s is not in repository %s; push it first", d, repo), map[string]string{"digest": d.String()})
	}
	return size, err
}

// BlobURL returns a URL a client can GET blob d of repo from directly, a
// presigned object-store URL good for content.s3.redirectExpiry, when the
// region's content store serves clients itself (content.s3.redirect);
// ok is false otherwise, and when repo does not link d (the caller serves
// the request itself: BLOB_UNKNOWN, or read-through).
func (r *Region) BlobURL(ctx context.Context, repo string, d digest.Digest) (u string, ok bool, err error) {
	red, can := r.store.Backend().(content.Redirector)
	if !can || r.cfg.Content.Driver != "s3" || !r.cfg.Content.S3.Redirect {
		return "", false, nil
	}
	if _, err := r.StatBlob(ctx, repo, d); err != nil {
		return "", false, nil
	}
	u, err = red.RedirectURL(ctx, content.BlobKey(d), r.cfg.Content.S3.WithDefaults().RedirectExpiry)
	return u, err == nil, err
}

// OpenBlob returns blob d's bytes from offset and its full size. The
// caller closes the reader.
func (r *Region) OpenBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	size, err := r.StatBlob(ctx, repo, d)
	if err != nil {
		return nil, 0, err
	}
	rc, err := r.store.Open(ctx, d, offset)
	if errors.Is(err, content.ErrNotFound) {
		// Linked but absent: storage lost it. Say so, not BLOB_UNKNOWN
		// silently; an operator must act.
		r.log.ErrorContext(ctx, "linked blob missing from content store", "repo", repo, "digest", d)
		return nil, 0, fmt.Errorf("blob %s linked in %s but missing from content store", d, repo)
	}
	return rc, size, err
}

// DeleteBlob removes blob d from repo. Its bytes stay until garbage
// collection finds no repository linking them.
func (r *Region) DeleteBlob(ctx context.Context, repo string, d digest.Digest) error {
	var found bool
	err := r.db.Update(ctx, func(tx *meta.Tx) error {
		var err error
		found, err = tx.UnlinkBlob(ctx, repo, d)
		if err != nil || !found {
			return err
		}
		return r.audit(ctx, tx, AuditDeleteBlob, repo, d.String(), d, "ok", "")
	})
	if err != nil {
		return err
	}
	if !found {
		return ocierr.BlobUnknown.WithDetail(fmt.Sprintf("blob %s is not in repository %s", d, repo),
			map[string]string{"digest": d.String()})
	}
	return nil
}

// MountBlob links blob d from repository from into repo without copying.
// It reports false when from does not hold d; the caller then starts an
// ordinary upload session, as the spec asks.
func (r *Region) MountBlob(ctx context.Context, repo, from string, d digest.Digest) (bool, error) {
	size, err := r.db.BlobSize(ctx, from, d)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := r.store.Stat(ctx, d); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, err
	}
	if err := r.linkBlob(ctx, repo, d, size, ""); err != nil {
		return false, err
	}
	return true, nil
}

// linkBlob links blob d in repo and records it in the feed, in one
// transaction; uploadID, when set, is the session that ends with it.
func (r *Region) linkBlob(ctx context.Context, repo string, d digest.Digest, size int64, uploadID string) error {
	err := r.db.Update(ctx, func(tx *meta.Tx) error {
		if err := r.link(ctx, tx, repo, d, size); err != nil {
			return err
		}
		if uploadID != "" {
			if err := tx.DeleteUpload(ctx, uploadID); err != nil {
				return err
			}
		}
		return r.record(ctx, tx, meta.KindBlob, repo, d, "", "", size, r.clock.Now())
	})
	if err == nil {
		r.feed.notify()
	}
	return err
}

// link links blob d in repo in tx, after checking in tx that its bytes
// are in the content store. Garbage collection deletes bytes only in a
// transaction that finds no link, and transactions run one at a time
// (across a region's nodes too), so a link is never made to bytes a
// collection deleted since they were written or found: no link without
// its bytes, whatever node wrote them and whatever node collects.
func (r *Region) link(ctx context.Context, tx *meta.Tx, repo string, d digest.Digest, size int64) error {
	if _, err := r.store.Stat(ctx, d); err != nil {
		if errors.Is(err, content.ErrNotFound) {
			return fmt.Errorf("link blob %s in %s: its bytes are not in the content store (collected meanwhile); fetch or upload it again: %w", d, repo, err)
		}
		return fmt.Errorf("link blob %s in %s: %w", d, repo, err)
	}
	return tx.LinkBlob(ctx, repo, d, size, r.now())
}

// PutBlob stores a whole blob sent in one request (a monolithic upload) as
// d. size is the declared length, or -1 when unknown.
func (r *Region) PutBlob(ctx context.Context, repo string, d digest.Digest, size int64, body io.Reader) (int64, error) {
	if !d.Algorithm().Available() {
		return 0, unsupportedDigest(d)
	}
	defer r.Lease(d)()
	n, err := r.store.Put(ctx, r.newID(), d, size, body)
	if err != nil {
		return 0, blobError(err, d)
	}
	return n, r.linkBlob(ctx, repo, d, n, "")
}

// blobError turns a content store's verification failure into the OCI
// error that tells the client what went wrong.
func blobError(err error, d digest.Digest) error {
	switch {
	case errors.Is(err, content.ErrDigestMismatch):
		return ocierr.DigestInvalid.WithDetail(
			fmt.Sprintf("the uploaded bytes do not hash to %s (%v); nothing was stored, upload again", d, err),
			map[string]string{"digest": d.String()})
	case errors.Is(err, content.ErrSizeMismatch):
		return ocierr.SizeInvalid.Withf("%v; nothing was stored, upload again", err)
	case errors.Is(err, content.ErrUnsupported):
		return unsupportedDigest(d)
	}
	return err
}

func unsupportedDigest(d digest.Digest) error {
	return ocierr.DigestInvalid.Withf("digest algorithm %q is not supported; use sha256 or sha512", d.Algorithm())
}
