package region

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/webhook"
)

// ResolveTag returns the digest tag points at in repo, or MANIFEST_UNKNOWN.
func (r *Region) ResolveTag(ctx context.Context, repo, tag string) (digest.Digest, error) {
	return r.resolveTag(ctx, repo, tag, r.cached())
}

// cached reports whether this read may use the cache: always with a store
// only this node writes; with a shared one, while this node holds its
// cache lease (meta/lease.go: invariant 5, a write acknowledged by any node
// is seen by the next read on every node). Without it the read goes to
// the store.
func (r *Region) cached() bool {
	return r.db.Fresh()
}

func (r *Region) resolveTag(ctx context.Context, repo, tag string, useCache bool) (digest.Digest, error) {
	if useCache {
		if d, ok := r.cache.tag(repo, tag); ok {
			return d, nil
		}
	}
	gen := r.cache.generation()
	t, err := r.db.GetTag(ctx, repo, tag)
	if isNotFound(err) {
		return "", ocierr.ManifestUnknown.WithDetail(
			fmt.Sprintf("tag %q is not in repository %s; list tags with GET /v2/%s/tags/list", tag, repo, repo),
			map[string]string{"repository": repo, "tag": tag})
	}
	if err != nil {
		return "", err
	}
	if useCache {
		r.cache.putTag(gen, repo, tag, t.Digest)
	}
	return t.Digest, nil
}

// GetManifest returns the manifest reference ref (a tag or a digest) names
// in repo, or MANIFEST_UNKNOWN. Most calls are answered from the cache.
func (r *Region) GetManifest(ctx context.Context, repo, ref string) (*meta.Manifest, error) {
	useCache := r.cached()
	d, err := r.parseRefCached(ctx, repo, ref, useCache)
	if err != nil {
		return nil, err
	}
	if useCache {
		if m := r.cache.manifest(repo, d); m != nil {
			return m, nil
		}
	}
	gen := r.cache.generation()
	m, err := r.db.GetManifest(ctx, repo, d)
	if isNotFound(err) {
		return nil, ocierr.ManifestUnknown.WithDetail(
			fmt.Sprintf("manifest %s is not in repository %s", d, repo),
			map[string]string{"repository": repo, "digest": d.String()})
	}
	if err != nil {
		return nil, err
	}
	if useCache {
		r.cache.putManifest(gen, m)
	}
	return m, nil
}

// ManifestGone returns MANIFEST_UNKNOWN when this region knows ref of repo
// is not to be served: a tag deleted here, a live tag pointing at a
// manifest deleted here, or a digest it holds a tombstone for. The region
// answers from that at once and asks no peer: a newer push elsewhere
// arrives by the feed, and nothing deleted is read back through
// (invariant 9). nil when the region has never heard of ref (read-through
// may look for it) or ref is malformed.
func (r *Region) ManifestGone(ctx context.Context, repo, ref string) error {
	if oci.IsDigest(ref) {
		d, err := oci.ParseDigest(ref)
		if err != nil {
			return nil
		}
		v, deleted, found, err := r.ManifestRow(ctx, repo, d)
		if err != nil || !found || !deleted {
			return err
		}
		return ocierr.ManifestUnknown.WithDetail(
			fmt.Sprintf("manifest %s was deleted from repository %s (version %s)", d, repo, v),
			map[string]string{"repository": repo, "digest": d.String(), "state": "deleted", "version": v.String()})
	}
	t, err := r.db.TagRecord(ctx, repo, ref)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if t.Deleted {
		return ocierr.ManifestUnknown.WithDetail(
			fmt.Sprintf("tag %q was deleted from repository %s (version %s)", ref, repo, t.Version),
			map[string]string{"repository": repo, "tag": ref, "state": "deleted", "version": t.Version.String()})
	}
	// A live tag: gone only when the manifest it points at is deleted
	// here. One this region has no row of (not arrived yet: a tag and its
	// manifest may be applied by different paths) may be read through.
	v, deleted, found, err := r.ManifestRow(ctx, repo, t.Digest)
	if err != nil || !found || !deleted {
		return err
	}
	return ocierr.ManifestUnknown.WithDetail(
		fmt.Sprintf("tag %q of repository %s points at manifest %s, which was deleted (version %s)", ref, repo, t.Digest, v),
		map[string]string{"repository": repo, "tag": ref, "digest": t.Digest.String(), "state": "deleted", "version": v.String()})
}

// parseRef resolves a manifest reference to a digest: a digest is parsed
// and checked, a tag is looked up.
func (r *Region) parseRef(ctx context.Context, repo, ref string) (digest.Digest, error) {
	return r.parseRefCached(ctx, repo, ref, r.cached())
}

func (r *Region) parseRefCached(ctx context.Context, repo, ref string, useCache bool) (digest.Digest, error) {
	if oci.IsDigest(ref) {
		d, err := oci.ParseDigest(ref)
		if err != nil {
			return "", ocierr.DigestInvalid.Withf("%v", err)
		}
		return d, nil
	}
	if err := oci.ValidateTag(ref); err != nil {
		// No manifest can have this name, so it is unknown (404), as the
		// conformance suite expects for a GET of a malformed reference.
		return "", ocierr.ManifestUnknown.WithDetail(err.Error(), map[string]string{"reference": ref})
	}
	return r.resolveTag(ctx, repo, ref, useCache)
}

// PutResult is what a manifest PUT reports back.
type PutResult struct {
	Digest  digest.Digest
	Subject digest.Digest // empty unless the manifest has a subject
}

// PutManifest validates payload and stores it in repo under ref (a tag or
// a digest), all before it writes anything: it parses, is within the size
// limit, its digest matches a digest reference, and every blob and child
// manifest it references is present in repo (invariant 2). The manifest
// and its tag are written in one transaction.
func (r *Region) PutManifest(ctx context.Context, repo, ref, contentType string, payload []byte) (PutResult, error) {
	if int64(len(payload)) > r.cfg.MaxManifestSize {
		return PutResult{}, ocierr.ManifestTooLarge.Withf("manifest is %d bytes; this registry accepts at most %d", len(payload), r.cfg.MaxManifestSize)
	}
	var tag string
	d := digest.SHA256.FromBytes(payload)
	if oci.IsDigest(ref) {
		want, err := oci.ParseDigest(ref)
		if err != nil {
			return PutResult{}, ocierr.DigestInvalid.Withf("%v", err)
		}
		if !want.Algorithm().Available() {
			return PutResult{}, unsupportedDigest(want)
		}
		if d = want.Algorithm().FromBytes(payload); d != want {
			return PutResult{}, ocierr.DigestInvalid.WithDetail(
				fmt.Sprintf("the manifest body hashes to %s, not %s; push it by that digest or by tag", d, want),
				map[string]string{"digest": want.String()})
		}
	} else {
		if err := oci.ValidateTag(ref); err != nil {
			return PutResult{}, ocierr.ManifestInvalid.WithDetail(err.Error(), map[string]string{"tag": ref})
		}
		tag = ref
	}
	m, err := oci.ParseManifest(contentType, payload)
	if err != nil {
		return PutResult{}, ocierr.ManifestInvalid.Withf("%v", err)
	}
	rec := manifestRecord(repo, d, m, payload, r.now())
	var tags []string
	if tag != "" {
		tags = []string{tag}
	}
	if err := r.commitManifest(ctx, rec, m, tags, nil); err != nil {
		return PutResult{}, err
	}
	return PutResult{Digest: d, Subject: rec.Subject}, nil
}

func manifestRecord(repo string, d digest.Digest, m *oci.Manifest, payload []byte, now time.Time) *meta.Manifest {
	rec := &meta.Manifest{
		Repo: repo, Digest: d, MediaType: m.MediaType, Size: int64(len(payload)), Payload: payload,
		ArtifactType: m.ResolvedArtifactType(), Annotations: m.Annotations, Created: now,
	}
	if m.Subject != nil {
		rec.Subject = m.Subject.Digest
	}
	return rec
}

// commitManifest stores rec (and tag, when set) in one transaction after
// checking, in that transaction, that everything it references is here
// (invariant 2). A local push (from == nil) gets a new version and feed
// records; a replicated one keeps rec.Version from its origin and moves
// the peer's cursor instead (when from names one). Both invalidate the
// cache the same way (invariant 5).
func (r *Region) commitManifest(ctx context.Context, rec *meta.Manifest, m *oci.Manifest, tags []string, from *peerCursor) error {
	now := r.now()
	tag := "" // the tag the manifest record names: the first
	if len(tags) > 0 {
		tag = tags[0]
	}
	var added int64
	err := r.db.UpdateRepo(ctx, rec.Repo, func(tx *meta.Tx) error {
		if from == nil {
			checks := tags
			if len(checks) == 0 {
				checks = []string{""} // the repository's lock alone
			}
			for _, t := range checks {
				if err := checkPush(ctx, tx, rec.Repo, t, rec.Digest); err != nil {
					return err
				}
			}
			var err error
			if added, err = r.checkQuota(ctx, tx, rec.Repo, manifestAdds(ctx, tx, rec.Repo, rec.Digest, rec.Size)); err != nil {
				return err
			}
		}
		// A manifest of an on-demand cached repository applied from a
		// peer comes without its blobs (ondemand.go).
		blobsHere := from == nil || !r.OnDemand(ctx, rec.Repo)
		if err := checkReferences(ctx, tx, rec.Repo, m, blobsHere); err != nil {
			return err
		}
		if from == nil {
			rec.Version = r.clock.Now()
		}
		v := rec.Version
		fresh, err := tx.PutManifest(ctx, rec)
		if err != nil {
			return err
		}
		if from != nil && !fresh {
			// Not stored when a tombstone at least as new is here: the
			// manifest was deleted (invariant 9). Nothing is present to
			// acknowledge.
			if _, deleted, err := tx.ManifestVersion(ctx, rec.Repo, rec.Digest); err != nil || deleted {
				if err != nil {
					return err
				}
				return r.setCursor(ctx, tx, from.peer, from.seq)
			}
		}
		for _, t := range tags {
			if _, err := tx.SetTag(ctx, rec.Repo, t, rec.Digest, v, now); err != nil {
				return err
			}
		}
		if from != nil {
			// Complete and pullable here. No record says so: peers learn
			// it from how far this region applied the origin's feed
			// (meta.AppliedMarks, published in feed stats).
			held := []meta.Held{{Region: r.cfg.Name}}
			if from.peer != "" {
				// The peer holds it, and so does every region that
				// applied its feed through this record; a manifest pushed
				// with a tag only through that tag's record (ApplyTag
				// marks it): until then a pull by the pushed tag would
				// miss there.
				mark := from.seq
				if from.tag != "" {
					mark = 0
				}
				held = append(held, meta.Held{Region: from.peer, Seq: mark})
			}
			if err := tx.SetPresences(ctx, rec.Repo, rec.Digest, now, held...); err != nil {
				return err
			}
			if fresh && from.tag == "" {
				ev := replicatedEvent(rec.Repo, rec.Digest, rec.MediaType, rec.Size, "", from.peer, rec.Version.Region)
				if err := r.emitNow(ctx, tx, ev); err != nil {
					return err
				}
			}
			if from.peer == "" {
				return nil
			}
			return tx.SetCursor(ctx, from.peer, cursorTo(ctx, from.seq), now)
		}
		// The manifest record names the tag it was pushed with, so a
		// replica fires one replicated event (with the tag) per push.
		if err := r.record(ctx, tx, meta.KindManifest, rec.Repo, rec.Digest, tag, rec.MediaType, rec.Size, v); err != nil {
			return err
		}
		for _, t := range tags {
			if err := r.record(ctx, tx, meta.KindTag, rec.Repo, rec.Digest, t, rec.MediaType, rec.Size, v); err != nil {
				return err
			}
		}
		// Held here, and by every region that applies this feed through
		// the records just appended.
		if err := tx.MarkPresence(ctx, rec.Repo, rec.Digest, r.cfg.Name, now); err != nil {
			return err
		}
		if len(tags) == 0 {
			if err := r.audit(ctx, tx, AuditPush, rec.Repo, rec.Digest.String(), rec.Digest, "ok", ""); err != nil {
				return err
			}
			return r.pushed(ctx, tx, rec, "")
		}
		for _, t := range tags {
			if err := r.audit(ctx, tx, AuditPush, rec.Repo, t, rec.Digest, "ok", ""); err != nil {
				return err
			}
			if err := r.pushed(ctx, tx, rec, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.pushedBytes(added)
	r.feed.notify()
	r.cache.invalidate(rec.Repo, rec.Digest, tags...)
	return nil
}

// checkReferences checks, inside the write transaction that stores m, that
// every blob and child manifest m references is present in repo with the
// declared size (blobs only with blobs). The subject need not exist (the
// spec says so).
func checkReferences(ctx context.Context, tx *meta.Tx, repo string, m *oci.Manifest, blobs bool) error {
	if oci.IsIndex(m.MediaType) {
		var ds []digest.Digest
		for _, c := range m.Manifests {
			ds = append(ds, c.Digest)
		}
		have, err := tx.ManifestsExist(ctx, repo, ds)
		if err != nil {
			return err
		}
		var missing []string
		for _, c := range m.Manifests {
			if !have[c.Digest] {
				missing = append(missing, c.Digest.String())
			}
		}
		if len(missing) > 0 {
			return missingError("the index references %d manifest(s) not in repository %s: %s; push them first", repo, missing)
		}
		return nil
	}
	if !blobs {
		return nil
	}
	refs := m.Blobs()
	var ds []digest.Digest
	for _, b := range refs {
		ds = append(ds, b.Digest)
	}
	sizes, err := tx.BlobSizes(ctx, repo, ds)
	if err != nil {
		return err
	}
	var missing []string
	for _, b := range refs {
		size, ok := sizes[b.Digest]
		if !ok {
			missing = append(missing, b.Digest.String())
			continue
		}
		if size != b.Size {
			return ocierr.ManifestInvalid.WithDetail(
				fmt.Sprintf("descriptor %s declares size %d but the stored blob has %d bytes; fix the manifest", b.Digest, b.Size, size),
				map[string]any{"digest": b.Digest.String(), "declared": b.Size, "stored": size})
		}
	}
	if len(missing) > 0 {
		return missingError("the manifest references %d blob(s) not in repository %s: %s; push them first", repo, missing)
	}
	return nil
}

// Bounds of a MANIFEST_BLOB_UNKNOWN answer: a manifest may reference
// thousands of digests, and the answer stays small whatever it holds.
const (
	missingInMessage = 5   // digests named in the message
	missingInDetail  = 100 // digests listed in the detail
)

// missingError is MANIFEST_BLOB_UNKNOWN for the missing digests: the
// count, the first few in the message, the first missingInDetail in the
// detail (detail.missing; detail.count is how many in all).
func missingError(format, repo string, missing []string) error {
	named := strings.Join(missing[:min(len(missing), missingInMessage)], ", ")
	if len(missing) > missingInMessage {
		named += fmt.Sprintf(" and %d more", len(missing)-missingInMessage)
	}
	return ocierr.ManifestBlobUnknown.WithDetail(fmt.Sprintf(format, len(missing), repo, named),
		map[string]any{"missing": missing[:min(len(missing), missingInDetail)], "count": len(missing)})
}

// DeleteManifest deletes by digest (the manifest and every tag pointing at
// it) or by tag (the tag only). Both leave versioned tombstones.
func (r *Region) DeleteManifest(ctx context.Context, repo, ref string) error {
	now := r.now()
	if !oci.IsDigest(ref) {
		if err := oci.ValidateTag(ref); err != nil {
			return ocierr.ManifestUnknown.WithDetail(err.Error(), map[string]string{"reference": ref})
		}
		var won bool
		err := r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
			if _, err := r.db.GetTag(ctx, repo, ref); err != nil {
				return err
			}
			if err := checkTagDelete(ctx, tx, repo, ref); err != nil {
				return err
			}
			v := r.clock.Now()
			var err error
			if won, err = tx.DeleteTag(ctx, repo, ref, v, now); err != nil || !won {
				return err
			}
			if err := r.record(ctx, tx, meta.KindTagDelete, repo, "", ref, "", 0, v); err != nil {
				return err
			}
			if err := r.audit(ctx, tx, AuditDelete, repo, ref, "", "ok", ""); err != nil {
				return err
			}
			ev := webhook.Event{Action: webhook.ActionDelete, Target: webhook.Target{Repository: repo, Tag: ref}, Request: webhook.RequestFrom(ctx)}
			return r.emitNow(ctx, tx, ev)
		})
		if isNotFound(err) || (err == nil && !won) {
			return ocierr.ManifestUnknown.WithDetail(fmt.Sprintf("tag %q is not in repository %s", ref, repo),
				map[string]string{"repository": repo, "tag": ref})
		}
		if err == nil {
			r.feed.notify()
		}
		r.cache.invalidate(repo, "", ref)
		return err
	}
	d, err := oci.ParseDigest(ref)
	if err != nil {
		return ocierr.DigestInvalid.Withf("%v", err)
	}
	var tags []string
	err = r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		v := r.clock.Now()
		m, err := tx.GetManifest(ctx, repo, d)
		if err != nil {
			return err
		}
		if err := checkManifestDelete(ctx, tx, repo, d); err != nil {
			return err
		}
		// A child of a live index stays while the index does: deleting
		// it would leave the index partial in every region (invariant 2).
		if index, err := listedBy(ctx, tx, repo, d); err != nil {
			return err
		} else if index != "" {
			return ocierr.Unsupported.WithDetail(
				fmt.Sprintf("manifest %s is listed by index %s in repository %s: delete the index first (deleting a child of a live index would leave it partial)", d, index, repo),
				map[string]string{"digest": d.String(), "index": index.String()})
		}
		if tags, err = tx.DeleteManifest(ctx, repo, d, v, now); err != nil {
			return err
		}
		// Each tag this delete removed gets its own record: replicas apply
		// exactly these, not "every tag pointing at d" in their own state,
		// which depends on what has arrived there (invariant 4).
		for _, tag := range tags {
			if err := r.record(ctx, tx, meta.KindTagDelete, repo, "", tag, "", 0, v); err != nil {
				return err
			}
		}
		if err := r.record(ctx, tx, meta.KindManifestDelete, repo, d, "", "", 0, v); err != nil {
			return err
		}
		if err := tx.DeletePendingEverywhere(ctx, repo, d); err != nil {
			return err
		}
		if err := r.audit(ctx, tx, AuditDelete, repo, d.String(), d, "ok", ""); err != nil {
			return err
		}
		ev := imageEvent(webhook.ActionDelete, repo, d, m.MediaType, m.Size, "")
		ev.Request = webhook.RequestFrom(ctx)
		return r.emitNow(ctx, tx, ev)
	})
	if err == nil {
		r.feed.notify()
	}
	if errors.Is(err, meta.ErrNotFound) {
		return ocierr.ManifestUnknown.WithDetail(fmt.Sprintf("manifest %s is not in repository %s", d, repo),
			map[string]string{"repository": repo, "digest": d.String()})
	}
	r.cache.invalidate(repo, d, tags...)
	return err
}

// Tags lists up to n tags of repo after last; NAME_UNKNOWN when repo was
// never pushed to.
func (r *Region) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	ok, err := r.db.RepositoryExists(ctx, repo)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ocierr.NameUnknown.WithDetail(fmt.Sprintf("repository %s is not known to this registry", repo),
			map[string]string{"repository": repo})
	}
	return r.db.Tags(ctx, repo, last, n)
}

// Repositories lists up to n repositories after last.
func (r *Region) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	return r.db.Repositories(ctx, last, n)
}

// Referrers lists the manifests in repo whose subject is d, filtered by
// artifactType when set. An unknown subject has no referrers.
func (r *Region) Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string, after digest.Digest, limit, maxBytes int) ([]meta.Referrer, bool, error) {
	return r.db.Referrers(ctx, repo, d, artifactType, after, limit, maxBytes)
}
