package region

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
)

// peerCursor names the feed record an apply consumes: the cursor of peer
// moves to seq in the apply's transaction.
type peerCursor struct {
	peer string
	seq  int64
	tag  string // the tag the origin pushed the manifest with, "" for none
}

// The Apply methods take changes another region originated. Each is
// idempotent (applying twice, or after a later change, ends in the same
// state), keeps the origin's version, records nothing in this region's
// feed, and moves peer's cursor to seq (or where CursorThrough says) in its
// own transaction.

// Cursor returns how far peer's feed has been applied here.
func (r *Region) Cursor(ctx context.Context, peer string) (int64, error) {
	return r.db.Cursor(ctx, peer)
}

// setCursor moves peer's cursor to seq (or where ctx says: CursorThrough);
// an empty peer is an apply outside the feed (a blob or child fetched for
// a parent) and moves nothing.
func (r *Region) setCursor(ctx context.Context, tx *meta.Tx, peer string, seq int64) error {
	if peer == "" {
		return nil
	}
	return tx.SetCursor(ctx, peer, cursorTo(ctx, seq), r.now())
}

type cursorThroughKey struct{}

// CursorThrough returns ctx for the apply (or skip, or park) of a peer's
// record that may move the peer's cursor only to through, not to the
// record's own number: a follower applying several records at once moves
// it over the records that are all applied (replicate: applyWindow),
// which may stop short of the record or go past it. The record's number
// still marks what it says of presence.
func CursorThrough(ctx context.Context, through int64) context.Context {
	return context.WithValue(ctx, cursorThroughKey{}, through)
}

// cursorTo is how far the apply of record seq moves its peer's cursor.
func cursorTo(ctx context.Context, seq int64) int64 {
	if through, ok := ctx.Value(cursorThroughKey{}).(int64); ok {
		return through
	}
	return seq
}

// Skip moves peer's cursor past seq without changing anything else: a
// record of repo that needs nothing here. Like an applied record's, it is
// a write of repo, beside other repositories' writes ("" for a record of
// no repository: region-wide).
func (r *Region) Skip(ctx context.Context, peer string, seq int64, repo string) error {
	fn := func(tx *meta.Tx) error { return r.setCursor(ctx, tx, peer, seq) }
	if repo == "" {
		return r.db.Update(ctx, fn)
	}
	return r.db.UpdateRepo(ctx, repo, fn)
}

// ApplyPresence records that peer holds manifest d of repo complete: its
// ack record, which regions of earlier versions wrote to their feeds; a
// push made here that is now in every Ready region fires
// replicated-everywhere.
func (r *Region) ApplyPresence(ctx context.Context, peer string, seq int64, repo string, d digest.Digest) error {
	return r.applyPresence(ctx, peer, seq, repo, d, nil, 0)
}

// ApplyManifestHeld applies a peer's manifest record, at version v, for a
// manifest held here already (pushed with pushedTag, "" for none): the
// peer holds it, and its
// version moves forward to v, so a delete older than that push does not
// win over it here either (the peer re-pushed it, say).
//
// The caller saw the manifest live before this transaction; a delete
// older than v applied since (another peer's follower runs at the same
// time) fails it with ErrHeldNoLonger and changes nothing: the record
// must be planned again, and then stores the manifest, whose push is the
// later one (invariant 9).
func (r *Region) ApplyManifestHeld(ctx context.Context, peer string, seq int64, repo string, d digest.Digest, v hlc.Version, pushedTag string) error {
	if err := r.clock.Admit(v); err != nil {
		return err
	}
	mark := seq // whoever applies the peer's feed through it holds it...
	if pushedTag != "" {
		mark = 0 // ...pushed with a tag: through the tag's record (ApplyTag)
	}
	return r.applyPresence(ctx, peer, seq, repo, d, &v, mark)
}

// ErrHeldNoLonger: a manifest seen held was deleted, by a delete older
// than the record being applied, before the record applied.
var ErrHeldNoLonger = errors.New("the manifest was deleted here, by an older delete, since it was seen held: plan the record again")

func (r *Region) applyPresence(ctx context.Context, peer string, seq int64, repo string, d digest.Digest, raise *hlc.Version, mark int64) error {
	return r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		if raise != nil {
			tomb, deleted, err := tx.ManifestVersion(ctx, repo, d)
			if err != nil && !isNotFound(err) {
				return err
			}
			if err == nil && deleted && tomb.Less(*raise) {
				return fmt.Errorf("manifest %s of %s at %s (deleted here at %s): %w", d, repo, *raise, tomb, ErrHeldNoLonger)
			}
			if err := tx.RaiseManifestVersion(ctx, repo, d, *raise); err != nil {
				return err
			}
		}
		if err := tx.SetPresence(ctx, repo, d, peer, r.now(), mark); err != nil {
			return err
		}
		if err := r.checkEverywhere(ctx, tx, repo, d); err != nil {
			return err
		}
		return r.setCursor(ctx, tx, peer, seq)
	})
}

// Status is where an image is, as this region knows it.
type Status struct {
	Digest  digest.Digest
	Here    bool                 // the manifest is complete and live here
	Present map[string]time.Time // regions known to hold it, since when
}

// ImageStatus resolves ref (tag or digest) in this region, without asking
// peers, and returns where the manifest is. MANIFEST_UNKNOWN when this
// region does not know ref.
func (r *Region) ImageStatus(ctx context.Context, repo, ref string) (*Status, error) {
	d, err := r.parseRef(ctx, repo, ref)
	if err != nil {
		return nil, err
	}
	here, err := r.HasManifest(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	present, err := r.db.Presence(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	if !here {
		delete(present, r.cfg.Name)
	}
	return &Status{Digest: d, Here: here, Present: present}, nil
}

// Tombstone reports whether ref (a tag, or a digest: a manifest, or a blob
// when no manifest has that digest here) is deleted in this region, and
// the version of the delete.
func (r *Region) Tombstone(ctx context.Context, repo, ref string) (hlc.Version, bool, error) {
	if !oci.IsDigest(ref) {
		t, err := r.db.TagRecord(ctx, repo, ref)
		if isNotFound(err) {
			return hlc.Version{}, false, nil
		}
		if err != nil {
			return hlc.Version{}, false, err
		}
		return t.Version, t.Deleted, nil
	}
	d, err := oci.ParseDigest(ref)
	if err != nil {
		return hlc.Version{}, false, ocierr.DigestInvalid.Withf("%v", err)
	}
	v, deleted, found, err := r.ManifestRow(ctx, repo, d)
	if err != nil || found {
		return v, deleted, err
	}
	tomb, deleted, err := r.BlobTombstone(ctx, repo, d)
	if err != nil || !deleted {
		return tomb, false, err
	}
	linked, err := r.HasBlob(ctx, repo, d)
	return tomb, !linked, err
}

// HasBlob reports whether repo links blob d here.
func (r *Region) HasBlob(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	_, err := r.db.BlobSize(ctx, repo, d)
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// HasContent reports whether the bytes of blob d are in this region's
// content store, linked in any repository or not.
func (r *Region) HasContent(ctx context.Context, d digest.Digest) (int64, bool, error) {
	size, err := r.store.Stat(ctx, d)
	if errors.Is(err, content.ErrNotFound) {
		return 0, false, nil
	}
	return size, err == nil, err
}

// ApplyBlob applies a peer's blob record: blob d (already in the content
// store) is linked in repo at version v, unless a delete of it at least as
// new is known here (last-writer-wins, invariant 9): a late copy of an
// older push never undoes a later delete.
//
// lease, when the caller took it (LeaseToLink) before fetching or finding
// the bytes, spares the link its look at the content store inside the
// transaction (linkLeased); nil asks. size is the blob's size as the
// caller found it in the content store after taking lease, or -1 to look
// it up.
func (r *Region) ApplyBlob(ctx context.Context, peer string, seq int64, repo string, d digest.Digest, v hlc.Version, size int64, lease *meta.BlobLease) error {
	if size < 0 {
		var err error
		if size, err = r.store.Stat(ctx, d); err != nil {
			return fmt.Errorf("apply blob %s: %w", d, err)
		}
	}
	if err := r.clock.Admit(v); err != nil {
		return err
	}
	return r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		tomb, err := tx.BlobTombstone(ctx, repo, d)
		switch {
		case err == nil && !tomb.Less(v):
			// Deleted since (or concurrently, and the delete wins).
		case err != nil && !isNotFound(err):
			return err
		default:
			if err := r.linkLeased(ctx, tx, repo, d, size, v, lease); err != nil {
				return err
			}
		}
		return r.setCursor(ctx, tx, peer, seq)
	})
}

// BlobWanted reports whether a peer's blob record at version v could link
// blob d in repo here: false when a delete at least as new is known, so
// the follower need not fetch its bytes.
func (r *Region) BlobWanted(ctx context.Context, repo string, d digest.Digest, v hlc.Version) (bool, error) {
	tomb, err := r.db.BlobTombstone(ctx, repo, d)
	if isNotFound(err) {
		return true, nil
	}
	return err == nil && tomb.Less(v), err
}

// AdoptBlob links blob d (already in the content store) in repo because a
// manifest stored here needs it, or a client read it through, or an import
// brought it. A delete of the blob does not stop it: a manifest's
// references win over a blob delete, so a manifest is never stored without
// its blobs (invariant 2). The link keeps the version it has. lease is as
// for ApplyBlob.
func (r *Region) AdoptBlob(ctx context.Context, repo string, d digest.Digest, lease *meta.BlobLease) error {
	size, err := r.store.Stat(ctx, d)
	if err != nil {
		return fmt.Errorf("link blob %s: %w", d, err)
	}
	return r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		return r.linkLeased(ctx, tx, repo, d, size, hlc.Version{}, lease)
	})
}

// AdoptReadBlob links blob d (already in the content store) in repo for a
// client's read-through, unless a delete of it from repo is known here
// and no link is: a delete that arrived while the bytes were being
// fetched wins (invariant 9), and the blob is not linked (linked false).
// The read-through began only where no delete was known (BlobGone), so
// any delete known now came meanwhile. lease is as for ApplyBlob.
func (r *Region) AdoptReadBlob(ctx context.Context, repo string, d digest.Digest, lease *meta.BlobLease) (linked bool, err error) {
	size, err := r.store.Stat(ctx, d)
	if err != nil {
		return false, fmt.Errorf("link blob %s: %w", d, err)
	}
	err = r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		linked = false
		if _, err := tx.BlobTombstone(ctx, repo, d); err == nil {
			if _, err := tx.BlobLinkVersion(ctx, repo, d); isNotFound(err) {
				return nil // deleted meanwhile
			} else if err != nil {
				return err
			}
		} else if !isNotFound(err) {
			return err
		}
		linked = true
		return r.linkLeased(ctx, tx, repo, d, size, hlc.Version{}, lease)
	})
	return linked, err
}

// ApplyBlobDelete applies a peer's delete of blob d from repo at version
// v: the tombstone is kept (the newest of all deletes), and the link goes
// unless it is newer (a later push or mount) or a live manifest of repo
// uses the blob (a manifest pushed in another region before the delete
// arrived there; the blob is then kept for it, and garbage collection
// removes the link once no manifest uses it).
func (r *Region) ApplyBlobDelete(ctx context.Context, peer string, seq int64, repo string, d digest.Digest, v hlc.Version) error {
	if err := r.clock.Admit(v); err != nil {
		return err
	}
	return r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		if _, err := tx.TombstoneBlob(ctx, repo, d, v, r.now()); err != nil {
			return err
		}
		lv, err := tx.BlobLinkVersion(ctx, repo, d)
		switch {
		case isNotFound(err):
		case err != nil:
			return err
		case lv.Less(v):
			m, err := usedBy(ctx, tx, repo, d)
			if err != nil {
				return err
			}
			if m == "" {
				if _, err := tx.UnlinkBlob(ctx, repo, d); err != nil {
					return err
				}
			}
		}
		return r.setCursor(ctx, tx, peer, seq)
	})
}

// ManifestRow returns the version of repo's row for manifest d, live or
// tombstone, and whether it is a tombstone; found false when there is no
// row.
func (r *Region) ManifestRow(ctx context.Context, repo string, d digest.Digest) (v hlc.Version, deleted, found bool, err error) {
	v, deleted, err = r.db.ManifestVersion(ctx, repo, d)
	if isNotFound(err) {
		return v, false, false, nil
	}
	return v, deleted, err == nil, err
}

// HasManifest reports whether repo holds manifest d live here.
func (r *Region) HasManifest(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	_, deleted, found, err := r.ManifestRow(ctx, repo, d)
	return found && !deleted, err
}

// ApplyManifest stores manifest d of repo, as its origin wrote it at
// version v, after the caller fetched every blob and child it references.
// A manifest missing a reference is refused (MANIFEST_BLOB_UNKNOWN), never
// stored in part. peer "" applies without moving a cursor (a child manifest
// fetched for its parent). tag is the tag the origin pushed it with (its
// feed record says; "" for none): the replicated event then waits for
// that tag, so one push is one event in every region.
func (r *Region) ApplyManifest(ctx context.Context, peer string, seq int64, repo string, d digest.Digest, mediaType string, payload []byte, v hlc.Version, tag string) error {
	if d.Algorithm().FromBytes(payload) != d {
		return ocierr.DigestInvalid.Withf("manifest from %s does not hash to %s", peer, d)
	}
	m, err := oci.ParseManifest(mediaType, payload)
	if err != nil {
		return ocierr.ManifestInvalid.Withf("manifest %s from %s: %v", d, peer, err)
	}
	if err := r.clock.Admit(v); err != nil {
		return err
	}
	rec := manifestRecord(repo, d, m, payload, r.now())
	rec.Version = v
	return r.commitManifest(ctx, rec, m, nil, &peerCursor{peer, seq, tag})
}

// ApplyTag points tag at d with version v unless a later write is stored
// (last-writer-wins on the tag alone, so every arrival order ends the same,
// invariant 4). The manifest is applied first (invariant 3), so a tag
// never resolves to a manifest that is on its way: unless required is
// false, a manifest this region has no row for is MANIFEST_BLOB_UNKNOWN,
// to retry once it arrived. A manifest deleted since leaves the tag
// pointing at a tombstone: it resolves to MANIFEST_UNKNOWN and is not
// listed, until a later tag write or delete arrives. A tag that wins and
// points at a live manifest fires replicated.
func (r *Region) ApplyTag(ctx context.Context, peer string, seq int64, repo, tag string, d digest.Digest, v hlc.Version, required bool) error {
	if err := r.clock.Admit(v); err != nil {
		return err
	}
	err := r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		_, _, err := tx.ManifestVersion(ctx, repo, d)
		switch {
		case isNotFound(err) && required:
			return ocierr.ManifestBlobUnknown.Withf("tag %s:%s points at %s, not held here yet", repo, tag, d)
		case err != nil && !isNotFound(err):
			return err
		}
		if err := tx.EnsureRepository(ctx, repo, r.now()); err != nil {
			return err
		}
		if frozen, err := tagFrozen(ctx, tx, repo, tag); err != nil || frozen {
			if err != nil {
				return err
			}
			return r.setCursor(ctx, tx, peer, seq) // a lock pins the tag here: the change is refused
		}
		won, err := tx.SetTag(ctx, repo, tag, d, v, r.now())
		if err != nil {
			return err
		}
		m, err := tx.GetManifest(ctx, repo, d)
		switch {
		case isNotFound(err):
		case err != nil:
			return err
		default:
			if won {
				ev := replicatedEvent(repo, d, m.MediaType, m.Size, tag, peer, v.Region)
				if err := r.emitNow(ctx, tx, ev); err != nil {
					return err
				}
			}
			// The manifest is complete here and its tag record has
			// applied, so a pull by that tag resolves here (or to a later
			// write of it), and in every region that applies the peer's
			// feed through this record: the mark a manifest pushed with a
			// tag waits for (commitManifest).
			held := []meta.Held{{Region: r.cfg.Name}}
			if peer != "" { // a repair (anti-entropy) names no peer's feed record
				held = append(held, meta.Held{Region: peer, Seq: seq})
			}
			if err := tx.SetPresences(ctx, repo, d, r.now(), held...); err != nil {
				return err
			}
			if err := r.checkEverywhere(ctx, tx, repo, d); err != nil {
				return err
			}
		}
		return r.setCursor(ctx, tx, peer, seq)
	})
	if err == nil {
		r.cache.invalidate(repo, "", tag)
	}
	return err
}

// ApplyTagDelete tombstones tag at version v unless a later write is
// stored.
func (r *Region) ApplyTagDelete(ctx context.Context, peer string, seq int64, repo, tag string, v hlc.Version) error {
	if err := r.clock.Admit(v); err != nil {
		return err
	}
	err := r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		if err := tx.EnsureRepository(ctx, repo, r.now()); err != nil {
			return err
		}
		if frozen, err := tagFrozen(ctx, tx, repo, tag); err != nil || frozen {
			if err != nil {
				return err
			}
			return r.setCursor(ctx, tx, peer, seq) // a lock pins the tag here
		}
		if _, err := tx.DeleteTag(ctx, repo, tag, v, r.now()); err != nil {
			return err
		}
		return r.setCursor(ctx, tx, peer, seq)
	})
	if err == nil {
		r.cache.invalidate(repo, "", tag)
	}
	return err
}

// ApplyManifestDelete tombstones manifest d at version v, held here or
// not, so a late copy of an older write cannot bring it back. Tags follow
// their own records (the origin records one delete per tag it removed), so
// the result does not depend on the order records arrive in.
func (r *Region) ApplyManifestDelete(ctx context.Context, peer string, seq int64, repo string, d digest.Digest, v hlc.Version) error {
	if err := r.clock.Admit(v); err != nil {
		return err
	}
	err := r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
		if name, _, err := pinnedBy(ctx, tx, repo, d); err != nil || name != "" {
			if err != nil {
				return err
			}
			return r.setCursor(ctx, tx, peer, seq) // a locked image keeps its manifest
		}
		if _, err := tx.TombstoneManifest(ctx, repo, d, v, r.now()); err != nil {
			return err
		}
		return r.setCursor(ctx, tx, peer, seq)
	})
	if err == nil {
		r.cache.invalidate(repo, d)
	}
	return err
}

// Summaries returns a hash per repository of its tags and manifests, for
// anti-entropy.
func (r *Region) Summaries(ctx context.Context) (map[string]string, error) {
	return r.db.Summaries(ctx)
}

// SummaryTree returns the root and buckets of the region's summary tree
// (meta/summarytree.go), for anti-entropy.
func (r *Region) SummaryTree(ctx context.Context) (meta.Tree, error) {
	return r.db.SummaryTree(ctx)
}

// BucketSummaries returns the summaries of the repositories of bucket b
// of the summary tree.
func (r *Region) BucketSummaries(ctx context.Context, b int) (map[string]string, error) {
	return r.db.BucketSummaries(ctx, b)
}

// SummaryScans is how many repositories the node scanned to keep its
// summaries, and how many it found changed behind georeg's back.
func (r *Region) SummaryScans() (scans, drifted int64) { return r.db.SummaryScans() }

// RepoEntries returns repo's tags and manifests with versions and
// tombstones, and its blob tombstones, for anti-entropy.
func (r *Region) RepoEntries(ctx context.Context, repo string) (meta.RepoState, error) {
	return r.db.RepoEntries(ctx, repo)
}
