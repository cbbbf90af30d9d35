package region

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
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

// ContentSize returns the size of blob d's bytes in the content store,
// linked in any repository or not; BLOB_UNKNOWN when they are not here.
func (r *Region) ContentSize(ctx context.Context, d digest.Digest) (int64, error) {
	size, ok, err := r.HasContent(ctx, d)
	if err == nil && !ok {
		return 0, ocierr.BlobUnknown.WithDetail(fmt.Sprintf("blob %s is not held here", d), map[string]string{"digest": d.String()})
	}
	return size, err
}

// OpenContent reads blob d's bytes from offset on, linked in any
// repository or not: for a peer that relays through this region
// (replicate.Replicator.RelayBlob), never for a client.
func (r *Region) OpenContent(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	rc, err := r.store.Open(ctx, d, offset)
	if errors.Is(err, content.ErrNotFound) {
		return nil, ocierr.BlobUnknown.WithDetail(fmt.Sprintf("blob %s is not held here", d), map[string]string{"digest": d.String()})
	}
	return rc, err
}

// DeleteBlob removes blob d from repo, registry-wide: the link goes and
// a versioned tombstone replicates to every region like a push
// (invariant 9). Its bytes stay until garbage collection finds no
// repository linking them. A blob a live manifest of repo references is
// not deleted (UNSUPPORTED, 405): the image would be left partial
// (invariant 2); delete the manifest first.
func (r *Region) DeleteBlob(ctx context.Context, repo string, d digest.Digest) error {
	var found bool
	err := r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		if _, err := tx.BlobLinkVersion(ctx, repo, d); isNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		found = true
		if m, err := usedBy(ctx, tx, repo, d); err != nil {
			return err
		} else if m != "" {
			return ocierr.Unsupported.WithDetail(
				fmt.Sprintf("blob %s is used by manifest %s in repository %s: delete the manifest first (deleting a blob an image uses would leave the image partial)", d, m, repo),
				map[string]string{"digest": d.String(), "manifest": m.String()})
		}
		v := r.clock.Now()
		if _, err := tx.UnlinkBlob(ctx, repo, d); err != nil {
			return err
		}
		if _, err := tx.TombstoneBlob(ctx, repo, d, v, r.now()); err != nil {
			return err
		}
		if err := r.record(ctx, tx, meta.KindBlobDelete, repo, d, "", "", 0, v); err != nil {
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
	r.feed.notify()
	return nil
}

// usedBy returns a live manifest of repo that references blob d, "" when
// none does. It parses every live manifest of the repository: blob
// deletes are rare, and no reference index has to be kept for them.
func usedBy(ctx context.Context, tx *meta.Tx, repo string, d digest.Digest) (digest.Digest, error) {
	return liveReferrer(ctx, tx, repo, func(meta.Payload) bool { return true },
		func(m *oci.Manifest) []oci.Descriptor { return m.Blobs() }, d)
}

// listedBy returns a live index of repo that lists manifest d as a
// child, "" when none does; only indexes are parsed.
func listedBy(ctx context.Context, tx *meta.Tx, repo string, d digest.Digest) (digest.Digest, error) {
	return liveReferrer(ctx, tx, repo, func(p meta.Payload) bool { return p.Digest != d && oci.IsIndex(p.MediaType) },
		func(m *oci.Manifest) []oci.Descriptor { return m.Manifests }, d)
}

// liveReferrer returns the first live manifest of repo, among those
// consider accepts, whose refs (parsed from it) name d; "" when none
// does.
func liveReferrer(ctx context.Context, tx *meta.Tx, repo string, consider func(meta.Payload) bool, refs func(*oci.Manifest) []oci.Descriptor, d digest.Digest) (digest.Digest, error) {
	payloads, err := tx.LivePayloads(ctx, repo)
	if err != nil {
		return "", err
	}
	for _, p := range payloads {
		if !consider(p) {
			continue
		}
		m, err := oci.ParseManifest(p.MediaType, p.Bytes)
		if err != nil {
			continue // stored manifests parse; one that does not references nothing we can tell
		}
		for _, ref := range refs(m) {
			if ref.Digest == d {
				return p.Digest, nil
			}
		}
	}
	return "", nil
}

// BlobGone returns BLOB_UNKNOWN when blob d was deleted from repo in this
// region and is not linked again: the region answers from its tombstone at
// once and asks no peer (a newer push elsewhere arrives by the feed), so
// nothing deleted is read back through (invariant 9). nil otherwise.
func (r *Region) BlobGone(ctx context.Context, repo string, d digest.Digest) error {
	v, err := r.db.BlobTombstone(ctx, repo, d)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := r.db.BlobSize(ctx, repo, d); err == nil {
		return nil // linked again since
	}
	return ocierr.BlobUnknown.WithDetail(
		fmt.Sprintf("blob %s was deleted from repository %s (version %s)", d, repo, v),
		map[string]string{"digest": d.String(), "state": "deleted", "version": v.String()})
}

// BlobTombstone returns the version of the newest delete of blob d from
// repo known here; ok false when none is.
func (r *Region) BlobTombstone(ctx context.Context, repo string, d digest.Digest) (hlc.Version, bool, error) {
	v, err := r.db.BlobTombstone(ctx, repo, d)
	if isNotFound(err) {
		return v, false, nil
	}
	return v, err == nil, err
}

// BlobVersion returns the version of repo's link to blob d (zero for a
// link made for a manifest or a read-through), or BLOB_UNKNOWN.
func (r *Region) BlobVersion(ctx context.Context, repo string, d digest.Digest) (hlc.Version, error) {
	v, err := r.db.BlobLinkVersion(ctx, repo, d)
	if isNotFound(err) {
		return v, ocierr.BlobUnknown.Withf("blob %s is not in repository %s", d, repo)
	}
	return v, err
}

// MountBlob links blob d from repository from into repo without copying.
// It reports false when from does not hold d; the caller then starts an
// ordinary upload session, as the spec asks. Its bytes are looked for
// once, under a lease taken first (LeaseToLink): found then, no sweep
// deletes them before the link, which does not look again (on S3 a HEAD
// inside the region's transaction).
func (r *Region) MountBlob(ctx context.Context, repo, from string, d digest.Digest) (bool, error) {
	size, err := r.db.BlobSize(ctx, from, d)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	lease, release := r.LeaseToLink(ctx, d)
	defer release()
	if _, err := r.store.Stat(ctx, d); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, err
	}
	if err := r.linkBlob(ctx, repo, d, size, "", lease); err != nil {
		return false, err
	}
	return true, nil
}

// linkBlob links blob d in repo and records it in the feed, in one
// transaction; uploadID, when set, is the session that ends with it. The
// link's version is new, so it wins over every delete of the blob this
// region has seen, here and in every region the record reaches. lease,
// when the caller wrote the bytes itself or found them in the store, is
// the lease it held since before that (LeaseToLink): see linkLeased.
func (r *Region) linkBlob(ctx context.Context, repo string, d digest.Digest, size int64, uploadID string, lease *meta.BlobLease) error {
	var added int64
	err := r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		var err error
		if added, err = r.checkQuota(ctx, tx, repo, blobAdds(ctx, tx, repo, d, size)); err != nil {
			return err
		}
		v := r.clock.Now()
		if err := r.linkLeased(ctx, tx, repo, d, size, v, lease); err != nil {
			return err
		}
		if uploadID != "" {
			if err := tx.DeleteUpload(ctx, uploadID); err != nil {
				return err
			}
		}
		return r.record(ctx, tx, meta.KindBlob, repo, d, "", "", size, v)
	})
	if err == nil {
		r.pushedBytes(added)
		r.feed.notify()
	}
	return err
}

// linkLeased links blob d in repo in tx, after checking in tx that its
// bytes are in the content store. Garbage collection deletes bytes only
// in a region-wide transaction that finds no link, and a region-wide
// transaction runs alone (across a region's nodes too: meta's write
// scopes), so a link is never made to bytes a collection deleted since
// they were written or found: no link without its bytes, whatever node
// wrote them and whatever node collects.
//
// The check is skipped for bytes the caller wrote or found under lease,
// taken before (LeaseToLink): while the lease holds, read in tx, no sweep
// on any node can have deleted them (on S3 the check is a request inside
// the write transaction, which on PostgreSQL holds every other write of
// the node's batch behind it). A nil lease, or one that does not hold
// (its connection lost), checks.
//
// v is the link's version (see meta.Tx.LinkBlob; zero keeps the one it
// has).
func (r *Region) linkLeased(ctx context.Context, tx *meta.Tx, repo string, d digest.Digest, size int64, v hlc.Version, lease *meta.BlobLease) error {
	holds, err := tx.BlobLeaseHolds(ctx, lease)
	if err != nil {
		return err
	}
	if !holds {
		if _, err := r.store.Stat(ctx, d); err != nil {
			if errors.Is(err, content.ErrNotFound) {
				return fmt.Errorf("link blob %s in %s: its bytes are not in the content store (collected meanwhile); fetch or upload it again: %w", d, repo, err)
			}
			return fmt.Errorf("link blob %s in %s: %w", d, repo, err)
		}
	}
	return tx.LinkBlob(ctx, repo, d, size, v, r.now())
}

// PutBlob stores a whole blob sent in one request (a monolithic upload) as
// d. size is the declared length, or -1 when unknown.
func (r *Region) PutBlob(ctx context.Context, repo string, d digest.Digest, size int64, body io.Reader) (int64, error) {
	if !d.Algorithm().Available() {
		return 0, unsupportedDigest(d)
	}
	lease, release := r.LeaseToLink(ctx, d)
	defer release()
	n, err := r.store.Put(ctx, r.newID(), d, size, body)
	if err != nil {
		return 0, blobError(err, d)
	}
	return n, r.linkBlob(ctx, repo, d, n, "", lease)
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
