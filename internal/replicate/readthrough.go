package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/bounded"
	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

// Read-through and split-push repair: when a client asks this region for
// something it lacks, or pushes a manifest whose blobs were uploaded to
// another region, the peers are asked, nearest first (config order), and
// the content is fetched, verified and stored here before it is served or
// accepted. An image is only ever served complete (invariant 2).

// where asks the peers, nearest first (peers' order: measured round
// trip), whether they hold repo's manifest ref (HEAD), and returns the
// digest from the nearest that does, with the names of all that do and
// of those that could not be asked. A peer whose feed is down (the
// follower's requests have failed, none succeeding for half the idle
// bound) is given downPeerAsk, not the full idle bound: a miss with a
// hung region costs seconds, not the idle timeout, every time; a peer
// that failed one request and is merely slow is not cut short.
//
// The peers are asked one after the other, not all at once: asking them
// at once (tried 2026-12-04) saved one round trip of a cold miss but made
// the fault-injection suite's stalled-link scenario fail a client's blob
// GET in about one run in six (none in 28 runs asked in turn).
func (p *Replicator) where(ctx context.Context, repo, ref string) (*source, digest.Digest, []string, []string) {
	var first *source
	var d digest.Digest
	var have, unreachable []string
	for _, s := range p.peers() {
		actx, done := ctx, context.CancelFunc(func() {})
		if p.tracker.feedDown(s.name, p.idle/2) {
			actx, done = context.WithTimeout(ctx, downPeerAsk)
		}
		got, err := s.head(actx, "/v2/"+repo+"/manifests/"+ref, strings.Join(oci.ManifestMediaTypes, ", "))
		done()
		switch {
		case errors.Is(err, errGone):
		case err != nil:
			unreachable = append(unreachable, s.name)
		default:
			have = append(have, s.name)
			if first == nil {
				first, d = s, got
			}
		}
	}
	return first, d, have, unreachable
}

// downPeerAsk bounds where's question to a peer whose feed is down.
const downPeerAsk = 2 * time.Second

// EnsureManifest makes manifest ref (tag or digest) of repo, with every
// blob and child, present here from the nearest peer holding it, and
// returns its digest. When no peer can provide it the error is
// MANIFEST_UNKNOWN naming the regions that hold it and the state
// (invariant 6); a tag fetched this way is not set here: the peer's feed
// brings it with its version. A ref this region knows to be deleted is
// MANIFEST_UNKNOWN at once, without asking a peer (invariant 9).
func (p *Replicator) EnsureManifest(ctx context.Context, repo, ref string) (digest.Digest, error) {
	if err := p.region.ManifestGone(ctx, repo, ref); err != nil {
		return "", err
	}
	s, d, have, unreachable := p.where(ctx, repo, ref)
	if s == nil {
		return "", notHere(repo, ref, have, unreachable, nil)
	}
	if oci.IsDigest(ref) && d.String() != ref {
		d = digest.Digest(ref)
	}
	// The version the peer tells: every newer write and delete the feed
	// brings later wins over it, and a delete held here that is newer
	// stops it.
	if err := p.ensureManifest(ctx, s, repo, d, hlc.Version{}, nil); err != nil {
		if errors.Is(err, errDeleted) {
			return "", ocierr.ManifestUnknown.WithDetail(
				fmt.Sprintf("%s:%s is deleted in this region; the copy in %s is older than the delete", repo, ref, s.name),
				map[string]string{"repository": repo, "reference": ref, "state": "deleted"})
		}
		p.log.WarnContext(ctx, "read-through failed", "peer", s.name, "repo", repo, "reference", ref, "error", err)
		return "", notHere(repo, ref, have, unreachable, err)
	}
	return d, nil
}

// EnsureManifestFrom is EnsureManifest from peer region, which is known
// to hold the manifest (the artifact cache's fetcher just stored it): the
// other peers are not asked, and by digest not even region is asked
// first. When region is not a peer, or fails, the
// nearest peer holding it is.
func (p *Replicator) EnsureManifestFrom(ctx context.Context, region, repo, ref string) (digest.Digest, error) {
	if err := p.region.ManifestGone(ctx, repo, ref); err != nil {
		return "", err
	}
	for _, s := range p.peers() {
		if s.name != region {
			continue
		}
		d := digest.Digest(ref)
		if !oci.IsDigest(ref) {
			var err error
			if d, err = s.head(ctx, "/v2/"+repo+"/manifests/"+ref, strings.Join(oci.ManifestMediaTypes, ", ")); err != nil {
				break
			}
		}
		if err := p.ensureManifest(ctx, s, repo, d, hlc.Version{}, nil); err != nil {
			if errors.Is(err, errDeleted) {
				break // EnsureManifest says so, naming the copy
			}
			p.log.WarnContext(ctx, "read-through failed: asking the other regions", "peer", s.name, "repo", repo, "reference", ref, "error", err)
			break
		}
		return d, nil
	}
	return p.EnsureManifest(ctx, repo, ref)
}

// notHere is the honest MANIFEST_UNKNOWN of invariant 6.
func notHere(repo, ref string, have, unreachable []string, cause error) error {
	detail := map[string]any{"repository": repo, "reference": ref}
	if len(unreachable) > 0 {
		detail["unreachable"] = unreachable
	}
	if len(have) == 0 {
		msg := fmt.Sprintf("%s:%s is not in this region", repo, ref)
		if len(unreachable) > 0 {
			msg += fmt.Sprintf(" and regions %s could not be asked; retry later", strings.Join(unreachable, ", "))
		} else {
			msg += " nor in any other region"
		}
		return ocierr.ManifestUnknown.WithDetail(msg, detail)
	}
	detail["available_in"] = have
	detail["state"] = "replicating"
	msg := fmt.Sprintf("%s:%s exists in %s but has not arrived in this region yet; retry shortly, or pull from %s",
		repo, ref, strings.Join(have, ", "), have[0])
	if cause != nil {
		detail["error"] = cause.Error()
	}
	return ocierr.ManifestUnknown.WithDetail(msg, detail)
}

// Endpoint returns the base URL of peer region.
func (p *Replicator) Endpoint(region string) (string, bool) {
	for _, s := range p.peers() {
		if s.name == region {
			return s.base, true
		}
	}
	return "", false
}

// notAnywhere is the BLOB_UNKNOWN of a blob no region could provide.
func notAnywhere(repo string, d digest.Digest) error {
	return ocierr.BlobUnknown.WithDetail(fmt.Sprintf("blob %s is not in repository %s in any region", d, repo),
		map[string]string{"digest": d.String()})
}

// Where returns MANIFEST_UNKNOWN naming the regions that hold repo's
// manifest ref, for a region with read-through turned off.
func (p *Replicator) Where(ctx context.Context, repo, ref string) error {
	if err := p.region.ManifestGone(ctx, repo, ref); err != nil {
		return err
	}
	_, _, have, unreachable := p.where(ctx, repo, ref)
	return notHere(repo, ref, have, unreachable, nil)
}

// EnsureBlob makes blob d present and linked in repo here from the nearest
// peer holding it; BLOB_UNKNOWN when none does, or at once when it was
// deleted here (invariant 9).
func (p *Replicator) EnsureBlob(ctx context.Context, repo string, d digest.Digest) error {
	if err := p.region.BlobGone(ctx, repo, d); err != nil {
		return err
	}
	defer p.region.Lease(d)()
	for _, s := range p.peers() {
		size, err := s.blobSize(ctx, repo, d)
		if err != nil {
			continue
		}
		if err := p.ensureBlob(ctx, s, repo, d, size, nil, true); err != nil {
			if gone := p.region.BlobGone(ctx, repo, d); gone != nil {
				return gone // deleted here while it was fetched: no peer's fault
			}
			p.log.WarnContext(ctx, "read-through of blob failed", "peer", s.name, "digest", d, "error", err)
			p.readThroughFailed(ctx, s.name, err)
			continue
		}
		return nil
	}
	return notAnywhere(repo, d)
}

// StreamBlob makes blob d present in repo here from the nearest peer
// holding it, and writes its bytes, as they arrive, to the writer start
// returns (called once, with the size, before the first byte). Bytes are
// stored and verified as they pass; the blob is linked only if its digest
// matches. When start was not called (the blob arrived meanwhile, or
// another request was fetching it and this one waited) the blob is here
// on a nil return and the caller serves it itself. An error after start was
// called means the client got bytes that must not be trusted: the caller
// breaks the connection.
//
// The fetch does not stop when the client goes away: it finishes for the
// next pull (its context drops the request's cancellation).
//
// Time to first byte is one round trip to the peer: the GET that fetches
// the blob also tells its size (no HEAD first), and a peer that lacks it
// answers that GET 404 and the next is asked. A peer whose transfer
// breaks after bytes reached the client (a stalled or cut link) is
// followed by the next peer holding the blob, from where the client is:
// its pull goes on instead of failing. A blob that fails its
// verification is not resumed: the client got bytes it must not trust.
func (p *Replicator) StreamBlob(ctx context.Context, repo string, d digest.Digest, start func(size int64) io.Writer) error {
	if err := p.region.BlobGone(ctx, repo, d); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	lease, release := p.region.LeaseToLink(ctx, d)
	defer release()
	if _, ok, err := p.region.HasContent(ctx, d); err != nil {
		return err
	} else if ok {
		return p.adoptRead(ctx, repo, d, lease)
	}
	var lw *region.LazyWriter // the client's answer: headers on its first byte
	var hw *region.HoldLast   // its last byte held until the blob is verified
	var sent int64            // bytes the client was given
	var lastErr error
	for _, s := range p.peers() {
		first, size, err := s.blobFrom(ctx, repo, d)
		if err != nil {
			continue
		}
		open := func(ctx context.Context, offset int64) (io.ReadCloser, error) {
			if offset == 0 && first != nil {
				rc := first
				first = nil
				return p.counted(rc, region.TrafficReceivedReadThrough, s.name), nil
			}
			rc, err := s.blob(ctx, repo, d, offset)
			if err != nil {
				return nil, err
			}
			return p.counted(rc, region.TrafficReceivedReadThrough, s.name), nil
		}
		if lw == nil {
			lw = &region.LazyWriter{Start: func() io.Writer { return start(size) }}
			hw = &region.HoldLast{W: lw}
		}
		// From the second peer on, the bytes the client has are not sent
		// again: the fetch resumes from what it kept (or starts over) and
		// its first bytes are the ones the client got.
		streamed, err := p.region.FetchBlob(ctx, region.FetchStagingID(d), d, size, open, &resumeWriter{w: hw, sent: &sent})
		if err == nil && sent > 0 && sent < size {
			// The client has part of it from an earlier peer, and the blob
			// arrived here meanwhile by another fetch: the rest is stored.
			var rc io.ReadCloser
			if rc, err = p.region.OpenContent(ctx, d, sent); err == nil {
				_, err = io.Copy(&resumeWriter{w: hw, pos: sent, sent: &sent}, io.LimitReader(rc, size-sent))
				rc.Close()
			}
		}
		if err == nil {
			// Verified and stored: the client gets its last byte.
			_ = hw.Release()
		}
		if first != nil {
			first.Close() // not used: the blob arrived meanwhile, or another fetch had it
		}
		if err != nil {
			p.log.WarnContext(ctx, "read-through of blob failed", "peer", s.name, "digest", d, "error", err)
			p.readThroughFailed(ctx, s.name, err)
			lastErr = err
			if (streamed || lw.W != nil) && !resumable(err) {
				return err
			}
			continue
		}
		if lw.W != nil {
			// The client has every byte, read before any delete that came
			// meanwhile; such a delete still keeps the blob unlinked here.
			_, err := p.region.AdoptReadBlob(ctx, repo, d, lease)
			return err
		}
		return p.adoptRead(ctx, repo, d, lease)
	}
	if lw != nil && lw.W != nil {
		return lastErr // the client got part of it: the caller breaks the connection
	}
	return notAnywhere(repo, d)
}

// resumable reports whether a read-through that failed after bytes
// reached its client may go on from another peer: the peer's transfer
// broke (stalled, cut), not the verification of what arrived (the client
// holds those bytes) nor this region's store.
func resumable(err error) bool {
	return !errors.Is(err, content.ErrDigestMismatch) && !errors.Is(err, content.ErrSizeMismatch) && !errors.Is(err, content.ErrWrite)
}

// resumeWriter passes on the bytes of one attempt of a fetch past the
// *sent its client has already, and counts them in *sent.
type resumeWriter struct {
	w    io.Writer
	pos  int64 // bytes of the blob this attempt wrote
	sent *int64
}

func (r *resumeWriter) Write(p []byte) (int, error) {
	n := len(p)
	if skip := *r.sent - r.pos; skip > 0 {
		if skip >= int64(n) {
			r.pos += int64(n)
			return n, nil
		}
		p = p[skip:]
		r.pos += skip
	}
	k, err := r.w.Write(p)
	r.pos += int64(k)
	*r.sent += int64(k)
	if err != nil {
		return n - len(p) + k, err
	}
	return n, nil
}

// StatBlob returns the size of blob d of repo in the nearest peer holding
// it, without fetching it, or BLOB_UNKNOWN.
func (p *Replicator) StatBlob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	if err := p.region.BlobGone(ctx, repo, d); err != nil {
		return 0, err
	}
	for _, s := range p.peers() {
		if size, err := s.blobSize(ctx, repo, d); err == nil {
			return size, nil
		}
	}
	return 0, notAnywhere(repo, d)
}

// EnsureReferences fetches from peers every blob and child manifest a
// manifest being pushed references that this region lacks: the repair of a
// push split across regions (invariant 7). What was deleted here is
// fetched only from a peer whose copy is newer than the delete (a push
// there since); a copy older than the delete is not revived (invariant 9).
func (p *Replicator) EnsureReferences(ctx context.Context, repo, contentType string, payload []byte) error {
	m, err := oci.ParseManifest(contentType, payload)
	if err != nil {
		return nil // the PUT reports the parse error itself
	}
	for _, c := range m.Manifests {
		if ok, err := p.region.HasManifest(ctx, repo, c.Digest); err != nil || ok {
			continue
		}
		s, d, have, unreachable := p.where(ctx, repo, c.Digest.String())
		if s == nil {
			return notHere(repo, c.Digest.String(), have, unreachable, nil)
		}
		if err := p.ensureManifest(ctx, s, repo, d, hlc.Version{}, nil); err != nil {
			return fmt.Errorf("child manifest %s: %w", c.Digest, err)
		}
	}
	for _, b := range m.Blobs() {
		if ok, err := p.region.HasBlob(ctx, repo, b.Digest); err != nil || ok {
			continue
		}
		if err := p.repairBlob(ctx, repo, b.Digest); err != nil {
			return err
		}
	}
	return nil
}

// repairBlob makes blob d linked in repo here for a manifest being pushed:
// from the nearest peer that links it, or, when it was deleted here, from
// the nearest peer whose link is newer than the delete, linked with that
// link's version.
func (p *Replicator) repairBlob(ctx context.Context, repo string, d digest.Digest) error {
	tomb, deleted, err := p.region.BlobTombstone(ctx, repo, d)
	if err != nil {
		return err
	}
	if !deleted {
		return p.EnsureBlob(ctx, repo, d)
	}
	defer p.region.Lease(d)()
	for _, s := range p.peers() {
		size, v, err := s.blobStat(ctx, repo, d)
		if err != nil || !tomb.Less(v) {
			continue
		}
		if err := p.fetchContent(ctx, s, repo, d, size, nil); err != nil {
			p.log.WarnContext(ctx, "repair of a deleted blob failed", "peer", s.name, "digest", d, "error", err)
			continue
		}
		return p.region.ApplyBlob(ctx, "", 0, repo, d, v, -1, nil)
	}
	return ocierr.BlobUnknown.WithDetail(
		fmt.Sprintf("blob %s was deleted from repository %s (version %s) and no region holds a newer copy; push it again", d, repo, tomb),
		map[string]string{"digest": d.String(), "state": "deleted"})
}

// head sends HEAD path and returns the Docker-Content-Digest; errGone on
// 404.
func (s *source) head(ctx context.Context, path, accept string) (digest.Digest, error) {
	resp, err := s.request(ctx, http.MethodHead, path, map[string]string{"Accept": accept})
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return digest.Digest(resp.Header.Get("Docker-Content-Digest")), nil
}

// blobSize returns the size of blob d of repo at the peer.
func (s *source) blobSize(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	size, _, err := s.blobStat(ctx, repo, d)
	return size, err
}

// blobStat returns the size of blob d of repo at the peer and the version
// of the peer's link (zero when it tells none).
func (s *source) blobStat(ctx context.Context, repo string, d digest.Digest) (int64, hlc.Version, error) {
	resp, err := s.request(ctx, http.MethodHead, "/v2/"+repo+"/blobs/"+d.String(), nil)
	if err != nil {
		return 0, hlc.Version{}, err
	}
	resp.Body.Close()
	size, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	return size, peerVersion(resp.Header), err
}

// readThroughFailed counts a read-through's blob fetch from peer that
// failed on the peer's side (stalled: cut by the idle bound) among the
// region's fetch failures, as the feed follower's are; a client that
// left is not the peer's failure.
func (p *Replicator) readThroughFailed(ctx context.Context, peer string, err error) {
	if ctx.Err() != nil || classify(err) != errPeerSide {
		return
	}
	p.metrics.FetchFailed(peer, errors.Is(err, bounded.ErrStalled))
}
