package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/internal/bounded"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// apply applies one record of s's feed, idempotently: it reads what the
// region holds of the object the record names, asks planRecord what that
// takes, and carries it out. A manifest seen held and deleted, by an
// older delete another follower applied, before the record applied is
// planned again at once (region.ErrHeldNoLonger).
func (p *Replicator) apply(ctx context.Context, s *source, rec meta.Record) error {
	err := p.applyOnce(ctx, s, rec)
	for i := 0; i < 3 && errors.Is(err, region.ErrHeldNoLonger); i++ {
		err = p.applyOnce(ctx, s, rec)
	}
	return err
}

func (p *Replicator) applyOnce(ctx context.Context, s *source, rec meta.Record) error {
	if rec.Kind == meta.KindBlob {
		return p.applyBlob(ctx, s, rec)
	}
	r := p.region
	l, err := p.holding(ctx, rec)
	if err != nil {
		return err
	}
	act := planRecord(rec, l)
	if act == actSkip {
		return r.Skip(ctx, s.name, rec.Seq, rec.Repo) // deleted here since: nothing to fetch
	}
	switch rec.Kind {
	case meta.KindBlobDelete:
		return r.ApplyBlobDelete(ctx, s.name, rec.Seq, rec.Repo, rec.Digest, rec.Version)
	case meta.KindManifest:
		if act == actHeld {
			return r.ApplyManifestHeld(ctx, s.name, rec.Seq, rec.Repo, rec.Digest, rec.Version, rec.Tag)
		}
		err := p.ensureManifest(ctx, s, rec.Repo, rec.Digest, rec.Version, &rec)
		if errors.Is(err, errGone) || errors.Is(err, errDeleted) {
			return r.Skip(ctx, s.name, rec.Seq, rec.Repo)
		}
		return err
	case meta.KindTag:
		// The manifest first (with the version its origin gave it, not the
		// tag's: a retag must not revive a manifest deleted since); if it
		// is deleted, here or at the peer, the tag still applies by its
		// version (pointing at nothing servable), so tags converge
		// whatever became of their manifests.
		err := p.ensureManifest(ctx, s, rec.Repo, rec.Digest, hlc.Version{}, nil)
		if err != nil && !errors.Is(err, errGone) && !errors.Is(err, errDeleted) {
			return err
		}
		return r.ApplyTag(ctx, s.name, rec.Seq, rec.Repo, rec.Tag, rec.Digest, rec.Version, err == nil)
	case meta.KindTagDelete:
		return r.ApplyTagDelete(ctx, s.name, rec.Seq, rec.Repo, rec.Tag, rec.Version)
	case meta.KindManifestDelete:
		return r.ApplyManifestDelete(ctx, s.name, rec.Seq, rec.Repo, rec.Digest, rec.Version)
	case meta.KindAck:
		return r.ApplyPresence(ctx, s.name, rec.Seq, rec.Repo, rec.Digest)
	case meta.KindSetting:
		return r.ApplySetting(ctx, s.name, rec.Seq, meta.Setting{
			Kind: rec.MediaType, Name: rec.Tag, Value: rec.Data, Version: rec.Version, Deleted: rec.Deleted})
	}
	return fmt.Errorf("record %d of %s: unknown kind %q", rec.Seq, s.name, rec.Kind)
}

// applyBlob applies a blob record: the bytes first (unless held), then the
// link and the cursor in one transaction. The lease comes before the look
// at the content store: from then to the link no node's sweep removes the
// bytes, so the size holding saw stays true and neither the link nor
// ApplyBlob looks at the store again.
func (p *Replicator) applyBlob(ctx context.Context, s *source, rec meta.Record) error {
	r := p.region
	lease, release := r.LeaseToLink(ctx, rec.Digest)
	defer release()
	l, err := p.holding(ctx, rec)
	if err != nil {
		return err
	}
	switch planRecord(rec, l) {
	case actSkip:
		return r.Skip(ctx, s.name, rec.Seq, rec.Repo) // deleted here since, or fetched only when pulled
	case actFetch:
		err := p.fetchContent(ctx, s, rec.Repo, rec.Digest, rec.Size, rec.Data)
		if errors.Is(err, errGone) {
			return r.Skip(ctx, s.name, rec.Seq, rec.Repo)
		}
		if err != nil {
			return err
		}
		l.ContentSize = -1 // stored just now: ApplyBlob looks its size up
	}
	return r.ApplyBlob(ctx, s.name, rec.Seq, rec.Repo, rec.Digest, rec.Version, l.ContentSize, lease)
}

// holding reads what this region holds of the object rec names: the facts
// planRecord decides on.
func (p *Replicator) holding(ctx context.Context, rec meta.Record) (local, error) {
	r := p.region
	var l local
	switch rec.Kind {
	case meta.KindBlob:
		var err error
		if l.ContentSize, l.ContentHeld, err = r.HasContent(ctx, rec.Digest); err != nil || l.ContentHeld {
			return l, err // a delete is ApplyBlob's to weigh, in its transaction
		}
		v, deleted, err := r.BlobTombstone(ctx, rec.Repo, rec.Digest)
		if deleted {
			l.Tombstone = &v
		}
		l.OnDemand = r.OnDemand(ctx, rec.Repo)
		return l, err
	case meta.KindManifest:
		v, deleted, found, err := r.ManifestRow(ctx, rec.Repo, rec.Digest)
		l.ManifestLive = found && !deleted
		if deleted {
			l.Tombstone = &v
		}
		return l, err
	}
	return l, nil
}

// ensureBlob makes blob d present and linked in repo here, for a manifest
// that references it: a delete of the blob here does not stop it
// (region.AdoptBlob). For a client that reads it through (read), a delete
// known here by the time the bytes arrived does: the blob is not linked
// and the delete's BLOB_UNKNOWN is returned (region.AdoptReadBlob).
//
// A blob linked already is left as it is, with no lease: a link garbage
// collection removes before the manifest is stored makes the manifest's
// apply refuse it (MANIFEST_BLOB_UNKNOWN), and ensureManifest links it
// again.
func (p *Replicator) ensureBlob(ctx context.Context, s *source, repo string, d digest.Digest, size int64, inline []byte, read bool) error {
	r := p.region
	if ok, err := r.HasBlob(ctx, repo, d); ok || err != nil {
		return err
	}
	lease, release := r.LeaseToLink(ctx, d)
	defer release()
	if err := p.fetchContent(ctx, s, repo, d, size, inline); err != nil {
		return err
	}
	if !read {
		return r.AdoptBlob(ctx, repo, d, lease)
	}
	return p.adoptRead(ctx, repo, d, lease)
}

// adoptRead links blob d, read through, in repo, or returns the BLOB_UNKNOWN
// of a delete that came meanwhile.
func (p *Replicator) adoptRead(ctx context.Context, repo string, d digest.Digest, lease *meta.BlobLease) error {
	linked, err := p.region.AdoptReadBlob(ctx, repo, d, lease)
	if err != nil || linked {
		return err
	}
	if err := p.region.BlobGone(ctx, repo, d); err != nil {
		return err
	}
	return notAnywhere(repo, d) // linked again since, and unlinked once more: not here
}

// fetchContent makes blob d's bytes present in the content store: from the
// record's inline data when it has some, else from the peers, as a
// fetchPlan chooses: the nearest that holds it, else s (the peer whose
// record named it); a transfer that stalls or breaks resumes, with a
// Range, from another region that holds it, or from the same one. Every
// byte is verified against d before the blob is stored. It gives up after
// a bounded number of attempts (the caller retries the record later);
// errGone when every peer tried answered 404.
func (p *Replicator) fetchContent(ctx context.Context, s *source, repo string, d digest.Digest, size int64, inline []byte) error {
	id := region.FetchStagingID(d)
	if inline != nil {
		// FetchBlob looks whether the bytes are held already.
		open := func(context.Context, int64) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(inline)), nil
		}
		_, err := p.region.FetchBlob(ctx, id, d, size, open, nil)
		return err // its bytes were counted as the feed page arrived (fetchPages)
	}
	if _, ok, err := p.region.HasContent(ctx, d); ok || err != nil {
		return err // held: no region need be asked
	}
	peers := p.peers()
	byName := map[string]*source{s.name: s}
	var order []string
	for _, src := range peers {
		order, byName[src.name] = append(order, src.name), src
	}
	plan := newFetchPlan(s.name, order, size)
	// A blob of s's own feed (s is its origin): through s's relay for this
	// region when it has one (relay.go), so s serves relayFanout copies.
	// Relays are chosen among the regions that answer: a relay that
	// stopped answering is not waited for.
	if relay := relayParent(s.name, p.region.Name(), p.relayMembers(), p.rttOf); relay != "" && byName[relay] != nil && size >= 0 {
		plan.relay = relay
	}
	for ctx.Err() == nil {
		st := plan.next()
		for _, name := range st.ask {
			got, err := byName[name].blobSize(ctx, repo, d)
			plan.asked(name, err == nil && (size < 0 || got == size))
		}
		if len(st.ask) > 0 {
			continue
		}
		if st.from == "" {
			if plan.allGone() {
				return fmt.Errorf("blob %s of %s: %w", d, repo, errGone)
			}
			return fmt.Errorf("blob %s of %s: no region could provide it now: %w", d, repo, plan.lastErr())
		}
		src := byName[st.from]
		relayed := st.relay
		open := func(ctx context.Context, offset int64) (io.ReadCloser, error) {
			var rc io.ReadCloser
			var err error
			if relayed {
				rc, err = src.relayedBlob(ctx, s.name, repo, d, size, offset)
			} else {
				rc, err = src.blob(ctx, repo, d, offset)
			}
			if err != nil {
				return nil, err
			}
			return p.counted(rc, region.TrafficReceived, src.name), nil
		}
		_, err := p.region.FetchBlob(ctx, id, d, size, open, nil)
		if err == nil {
			return nil
		}
		if classify(err) != errPeerSide {
			return err // this region's side (a full disk): retrying elsewhere would not help
		}
		plan.failedFrom(src.name, err)
		p.metrics.FetchFailed(src.name, errors.Is(err, bounded.ErrStalled))
		if !errors.Is(err, errGone) {
			p.log.InfoContext(ctx, "blob fetch failed; resuming from the next region that holds it", "peer", src.name, "digest", d, "error", err)
		}
	}
	return ctx.Err()
}

// counted counts what is read from rc as traffic of kind with peer (once,
// when it is closed).
func (p *Replicator) counted(rc io.ReadCloser, kind, peer string) io.ReadCloser {
	return &countingReader{ReadCloser: rc, done: func(n int64) { p.region.CountTraffic(kind, peer, n) }}
}

type countingReader struct {
	io.ReadCloser
	n    int64
	done func(int64)
	once sync.Once
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error {
	c.once.Do(func() { c.done(c.n) })
	return c.ReadCloser.Close()
}

// nearMin is the smallest blob worth asking nearer peers about: below it,
// the extra round trip of asking costs more than fetching from afar.
const nearMin = 1 << 20

// prefetchers bounds the blob fetches a follower runs ahead of its apply
// (each holds one 1 MiB buffer). A far link needs its bandwidth-delay
// product in flight: 100 MB/s x 80 ms RTT is 8 MB, eight 1 MiB layers.
// Measured, backfill of 1,000 1 MiB images over such a link: 41% of it
// with 4, 92% with 16 (bench -only backfill).
const prefetchers = 16

// referenceFetchers bounds the blobs and children of one manifest fetched
// at once.
const referenceFetchers = 8

// ensureManifest makes manifest d present in repo here, blobs and child
// manifests first. v is the manifest's version, when the caller knows it
// (its feed record, anti-entropy); zero takes the version the peer tells
// as it serves it (a borrowed copy without one stays at zero, so every
// real write and delete wins over it). A tombstone here at least as new as
// that version stops it: errDeleted, and nothing is stored (invariant 9).
// With rec, the manifest record of s's feed being applied, s's cursor
// moves to it in the apply, the record's inline bytes are used (verified
// like fetched ones), and its tag (the one the origin pushed it with) is
// passed on for the replicated event.
func (p *Replicator) ensureManifest(ctx context.Context, s *source, repo string, d digest.Digest, v hlc.Version, rec *meta.Record) error {
	r := p.region
	peer, seq, pushedTag := "", int64(0), ""
	fetched := fetchedManifest{}
	if rec != nil {
		peer, seq, pushedTag = s.name, rec.Seq, rec.Tag
		fetched = fetchedManifest{mediaType: rec.MediaType, payload: rec.Data}
	}
	tomb, deleted, found, err := r.ManifestRow(ctx, repo, d)
	if err != nil {
		return err
	}
	if found && !deleted {
		if peer != "" {
			return r.ApplyManifestHeld(ctx, peer, seq, repo, d, v, pushedTag)
		}
		return nil
	}
	if deleted && !v.IsZero() && !tomb.Less(v) {
		return fmt.Errorf("manifest %s of %s (version %s; deleted here at %s): %w", d, repo, v, tomb, errDeleted)
	}
	if fetched.payload == nil {
		mt := fetched.mediaType
		if fetched, err = s.manifest(ctx, repo, d, r.MaxManifestSize()); err != nil {
			return err
		}
		if mt != "" && fetched.mediaType == "" {
			fetched.mediaType = mt
		}
	}
	if v.IsZero() {
		v = fetched.version
	}
	if deleted && !tomb.Less(v) {
		return fmt.Errorf("manifest %s of %s from %s (version %s; deleted here at %s): %w", d, repo, s.name, v, tomb, errDeleted)
	}
	m, err := oci.ParseManifest(fetched.mediaType, fetched.payload)
	if err != nil {
		return fmt.Errorf("manifest %s from %s: %w", d, s.name, err)
	}
	// Children and blobs are fetched at once (several round trips to a far
	// peer overlap); the manifest is applied only after all are here
	// (invariant 3).
	// No shared cancellation: one failed fetch must not cut another that a
	// concurrent fetch of the same blob (the feed's, a read-through) waits on.
	blobs := m.Blobs()
	if r.OnDemand(ctx, repo) {
		blobs = nil // fetched here when a client first reads them (region/ondemand.go)
	}
	ensureRefs := func() error {
		var g errgroup.Group
		g.SetLimit(referenceFetchers)
		for _, c := range m.Manifests {
			g.Go(func() error {
				if err := p.ensureManifest(ctx, s, repo, c.Digest, hlc.Version{}, nil); err != nil {
					return fmt.Errorf("child %s of %s: %w", c.Digest, d, err)
				}
				return nil
			})
		}
		for _, b := range blobs {
			g.Go(func() error {
				if err := p.ensureBlob(ctx, s, repo, b.Digest, b.Size, nil, false); err != nil {
					return fmt.Errorf("blob %s of %s: %w", b.Digest, d, err)
				}
				return nil
			})
		}
		return g.Wait()
	}
	if err := ensureRefs(); err != nil {
		return err
	}
	err = r.ApplyManifest(ctx, peer, seq, repo, d, m.MediaType, fetched.payload, v, pushedTag)
	if ocierr.ManifestBlobUnknown.Is(err) {
		// A reference found linked here (so not fetched) was unlinked
		// before the manifest was stored: garbage collection removes
		// links no live manifest uses once older than its grace period.
		// Once more: what is missing now is linked anew, dated now, which
		// no collection unlinks within its grace period.
		if err := ensureRefs(); err != nil {
			return err
		}
		err = r.ApplyManifest(ctx, peer, seq, repo, d, m.MediaType, fetched.payload, v, pushedTag)
	}
	return err
}
