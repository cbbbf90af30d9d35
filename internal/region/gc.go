package region

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
)

// Garbage collection frees the storage of blobs no live manifest needs,
// online: pushes, pulls, replication and read-through go on meanwhile.
// Each region collects its own storage. Two phases:
//
//  1. Unlink, one repository per write transaction: a blob link older than
//     the grace period that no live manifest of the repository references
//     is removed. The manifests are read in that same transaction, and
//     every manifest commit takes the same single writer, so a manifest
//     pushed meanwhile either is seen (its blobs are kept) or commits after
//     (and finds the link gone: MANIFEST_BLOB_UNKNOWN, never a served
//     manifest without its blob). A link younger than the grace period is
//     kept: a push uploads its blobs before its manifest.
//  2. Sweep: a blob in the content store written before the grace period,
//     linked by no repository and not leased is deleted, the check and the
//     delete in one write transaction, so no link can be made in between.
//     Every write of a blob's bytes (upload, replication, read-through,
//     import) refreshes its time and holds a lease until it is linked
//     (see leases.go), so bytes on their way to a link are spared.
//
// A dry run reports what would go without changing anything.

// GCReport is what a collection did (or, dry, would do).
type GCReport struct {
	Region       string        `json:"region"`
	DryRun       bool          `json:"dryRun"`
	Started      time.Time     `json:"started"`
	Duration     time.Duration `json:"durationNs"`
	Grace        time.Duration `json:"graceNs"`
	Repositories int           `json:"repositories"`
	LinksRemoved int           `json:"linksRemoved"`
	BlobsDeleted int           `json:"blobsDeleted"`
	BytesFreed   int64         `json:"bytesFreed"`
	BlobsKept    int           `json:"blobsKept"`
	// ManifestsPurged: manifests kept by soft delete past its period,
	// dropped (blobs they alone needed go with the links).
	ManifestsPurged int    `json:"manifestsPurged"`
	Error           string `json:"error,omitempty"`
}

// gcState serializes collections and keeps the last report.
type gcState struct {
	mu     sync.Mutex // one collection at a time
	lastMu sync.Mutex
	last   *GCReport
	onDone func(GCReport)
}

// OnGC has every finished collection reported to fn (metrics).
func (r *Region) OnGC(fn func(GCReport)) { r.gc.onDone = fn }

// LastGC returns the last collection's report, or nil.
func (r *Region) LastGC() *GCReport {
	r.gc.lastMu.Lock()
	defer r.gc.lastMu.Unlock()
	return r.gc.last
}

// GC collects garbage now (see above); with dryRun it only reports.
func (r *Region) GC(ctx context.Context, dryRun bool) (GCReport, error) {
	r.gc.mu.Lock()
	defer r.gc.mu.Unlock()
	grace := r.cfg.GCGrace
	rep := GCReport{Region: r.cfg.Name, DryRun: dryRun, Started: r.now(), Grace: grace}
	err := r.collect(ctx, &rep, dryRun)
	rep.Duration = r.now().Sub(rep.Started)
	if err != nil {
		rep.Error = err.Error()
	}
	r.gc.lastMu.Lock()
	r.gc.last = &rep
	r.gc.lastMu.Unlock()
	if r.gc.onDone != nil {
		r.gc.onDone(rep)
	}
	return rep, err
}

func (r *Region) collect(ctx context.Context, rep *GCReport, dryRun bool) error {
	cutoff := r.now().Add(-rep.Grace)
	unlinked := map[digest.Digest]int{} // links a dry run would remove, per blob
	last := ""
	for {
		repos, err := r.db.Repositories(ctx, last, 1000)
		if err != nil {
			return err
		}
		for _, repo := range repos {
			rep.Repositories++
			err := r.db.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
				return r.unlinkUnreferenced(ctx, tx, repo, cutoff, dryRun, rep, unlinked)
			})
			if err != nil {
				return fmt.Errorf("repository %s: %w", repo, err)
			}
		}
		if len(repos) < 1000 {
			break
		}
		last = repos[len(repos)-1]
	}
	return r.store.Backend().Walk(ctx, "blobs/", func(key string, size int64, modified time.Time) error {
		d, ok := blobDigest(key)
		if !ok {
			return nil // not a blob (a temporary file, say)
		}
		if !modified.Before(cutoff) {
			rep.BlobsKept++
			return nil
		}
		if dryRun {
			n, err := r.db.LinkCount(ctx, d)
			if err != nil {
				return err
			}
			if n-unlinked[d] <= 0 {
				rep.BlobsDeleted++
				rep.BytesFreed += size
			} else {
				rep.BlobsKept++
			}
			return nil
		}
		leased, err := r.unlessLeased(d, func() error {
			return r.db.Update(ctx, func(tx *meta.Tx) error {
				linked, err := tx.Linked(ctx, d)
				if err != nil || linked {
					if linked {
						rep.BlobsKept++
					}
					return err
				}
				// Another node's lease (PostgreSQL): bytes on their way
				// to a link, which may not ask the store again.
				free, err := tx.NoBlobLease(ctx, d)
				if err != nil {
					return err
				}
				if !free {
					rep.BlobsKept++
					return nil
				}
				if err := r.store.Delete(ctx, d); err != nil && !errors.Is(err, content.ErrNotFound) {
					return err
				}
				rep.BlobsDeleted++
				rep.BytesFreed += size
				return nil
			})
		})
		if leased {
			rep.BlobsKept++
		}
		return err
	})
}

// unlinkUnreferenced removes repo's links older than cutoff that no live
// or restorable (soft delete) manifest of repo references, in tx.
func (r *Region) unlinkUnreferenced(ctx context.Context, tx *meta.Tx, repo string, cutoff time.Time, dryRun bool, rep *GCReport, unlinked map[digest.Digest]int) error {
	// What soft delete kept past its period goes first, so its blobs go
	// with this collection; what is restorable keeps its blobs.
	restorableSince := r.now().Add(-r.softDeleteNow().Period())
	if !dryRun {
		purged, err := tx.PurgeDeleted(ctx, repo, restorableSince, "", hlc.Version{})
		if err != nil {
			return err
		}
		rep.ManifestsPurged += len(purged)
		for _, d := range purged {
			if err := r.purged(ctx, tx, repo, d, "the soft-delete period ended"); err != nil {
				return err
			}
		}
		p := r.softDeleteNow()
		if _, err := tx.PurgeTagHistory(ctx, repo, r.now().Add(-p.HistoryPeriod()), !p.Enabled()); err != nil {
			return err
		}
	}
	links, err := tx.Links(ctx, repo, cutoff)
	if err != nil || len(links) == 0 {
		return err
	}
	payloads, err := tx.LivePayloads(ctx, repo)
	if err != nil {
		return err
	}
	restorable, err := tx.RestorablePayloads(ctx, repo, restorableSince)
	if err != nil {
		return err
	}
	payloads = append(payloads, restorable...)
	referenced := map[digest.Digest]bool{}
	for _, p := range payloads {
		m, err := oci.ParseManifest(p.MediaType, p.Bytes)
		if err != nil {
			return fmt.Errorf("a stored manifest does not parse (%v): nothing of the repository is collected", err)
		}
		for _, b := range m.Blobs() {
			referenced[b.Digest] = true
		}
	}
	for _, l := range links {
		if referenced[l.Digest] {
			continue
		}
		rep.LinksRemoved++
		if dryRun {
			unlinked[l.Digest]++
			continue
		}
		if _, err := tx.UnlinkBlob(ctx, repo, l.Digest); err != nil {
			return err
		}
	}
	return nil
}

// blobDigest reads a content store key (blobs/<alg>/<hex[:2]>/<hex>) back
// into a digest.
func blobDigest(key string) (digest.Digest, bool) {
	parts := strings.Split(key, "/")
	if len(parts) < 3 || parts[0] != "blobs" {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[len(parts)-1])
	if d.Validate() != nil || content.BlobKey(d) != key {
		return "", false
	}
	return d, true
}

// RunGC collects every interval until ctx ends (interval 0: never).
func (r *Region) RunGC(ctx context.Context) error {
	if r.cfg.GCInterval <= 0 {
		return nil
	}
	t := time.NewTicker(r.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if rep, err := r.GC(ctx, false); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "garbage collection", "error", err)
		} else if err == nil {
			r.log.InfoContext(ctx, "garbage collected", "links_removed", rep.LinksRemoved, "blobs_deleted", rep.BlobsDeleted,
				"bytes_freed", rep.BytesFreed, "duration", rep.Duration)
		}
	}
}
