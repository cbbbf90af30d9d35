package ociapi

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/ocierr"
)

func parseDigest(s string) (digest.Digest, error) {
	d, err := oci.ParseDigest(s)
	if err != nil {
		return "", ocierr.DigestInvalid.Withf("%v", err)
	}
	return d, nil
}

// getBlob serves GET and HEAD of a blob (end-2). With a data endpoint, a
// client's GET of a blob held here is answered 307 to it, with the same
// path: the bytes never pass through a front door. With an S3 content
// store set to redirect, it is answered 307 to a presigned URL of the
// object.
func (a *API) getBlob(w http.ResponseWriter, r *http.Request, route Route) error {
	if a.opts.DataURL != "" && r.Method == http.MethodGet && !a.isPeer(r) {
		if d, err := parseDigest(route.Ref); err == nil {
			if _, err := a.region.StatBlob(r.Context(), route.Repo, d); err == nil {
				w.Header().Set("Location", strings.TrimSuffix(a.opts.DataURL, "/")+a.signData(r.URL.Path, time.Now()))
				w.Header().Set("Docker-Content-Digest", d.String())
				w.WriteHeader(http.StatusTemporaryRedirect)
				return nil
			}
		}
	}
	if r.Method == http.MethodGet && !a.isPeer(r) {
		// An object store that serves clients itself: 307 to a presigned
		// URL of the blob (peers get the bytes here, as with data
		// endpoints).
		if d, err := parseDigest(route.Ref); err == nil {
			u, ok, err := a.region.BlobURL(r.Context(), route.Repo, d)
			if err != nil {
				return err
			}
			if ok {
				w.Header().Set("Location", u)
				w.Header().Set("Docker-Content-Digest", d.String())
				w.WriteHeader(http.StatusTemporaryRedirect)
				return nil
			}
		}
	}
	return a.serveBlob(w, r, route)
}

// serveBlob sends a blob, with a single Range answered 206 and an
// unsatisfiable one 416. The file is copied by the kernel (sendfile) when
// the content store is on a filesystem.
func (a *API) serveBlob(w http.ResponseWriter, r *http.Request, route Route) error {
	d, err := parseDigest(route.Ref)
	if err != nil {
		return err
	}
	ctx := r.Context()
	size, err := a.region.StatBlob(ctx, route.Repo, d)
	if err == nil && r.Method == http.MethodHead {
		// A push that checks, then skips the upload: its link is kept.
		if terr := a.region.TouchBlob(ctx, route.Repo, d); terr != nil {
			a.log.WarnContext(ctx, "date a checked blob's link anew", "repo", route.Repo, "digest", d, "error", terr)
		}
	}
	if ocierr.BlobUnknown.Is(err) {
		// A blob of an image the artifact cache is fetching here: fetched
		// now, or the fetch running followed, as it lands.
		if offered, handled, cerr := a.serveOffered(w, r, route.Repo, d); handled {
			return cerr
		} else if offered && cerr == nil {
			size, err = a.region.StatBlob(ctx, route.Repo, d) // fetched and linked now
		}
	}
	if ocierr.BlobUnknown.Is(err) && r.Method == http.MethodGet && a.isPeer(r) && a.opts.Peers != nil && r.Header.Get(feed.RelayOriginHeader) != "" {
		return a.relayBlob(w, r, route, d)
	}
	// A blob of an on-demand cached repository is read through whatever
	// the region's read-through setting: that is how its bytes come here.
	onDemand := ocierr.BlobUnknown.Is(err) && a.region.OnDemand(ctx, route.Repo)
	if ocierr.BlobUnknown.Is(err) && (a.opts.ReadThrough || onDemand) && a.askPeers(r) {
		servedReadThrough(ctx)
		if r.Method == http.MethodGet && r.Header.Get("Range") == "" {
			// Stream it from the peer while it is stored and verified here.
			streamed := false
			err = a.opts.Peers.StreamBlob(ctx, route.Repo, d, func(size int64) io.Writer {
				streamed = true
				setBlobHeaders(w, d)
				w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
				w.WriteHeader(http.StatusOK)
				return w
			})
			if streamed {
				if err != nil {
					// The client got bytes that failed verification:
					// break the connection rather than end the body.
					panic(http.ErrAbortHandler)
				}
				return nil
			}
			if err == nil {
				// Not streamed: another fetch of it finished first, or it
				// arrived meanwhile. It is here now: serve it as usual.
				size, err = a.region.StatBlob(ctx, route.Repo, d)
			}
		} else if r.Method == http.MethodHead {
			// Answer from the peer's size; the GET that follows streams it.
			size, err = a.opts.Peers.StatBlob(ctx, route.Repo, d)
		} else {
			err = a.opts.Peers.EnsureBlob(ctx, route.Repo, d)
			if err == nil {
				size, err = a.region.StatBlob(ctx, route.Repo, d)
			}
		}
	}
	if ocierr.BlobUnknown.Is(err) && onDemand && a.askPeers(r) && a.opts.Upstream != nil {
		// No region could provide it (those that held it are down): the
		// upstream can.
		if ok, uerr := a.opts.Upstream.EnsureBlob(ctx, route.Repo, d); ok {
			if err = uerr; err == nil {
				size, err = a.region.StatBlob(ctx, route.Repo, d)
			}
		}
	}
	if err != nil {
		return err
	}
	setBlobHeaders(w, d)
	h := w.Header()
	if a.isPeer(r) {
		if v, err := a.region.BlobVersion(ctx, route.Repo, d); err == nil && !v.IsZero() {
			h.Set(feed.VersionHeader, v.String())
		}
	}
	rng, partial, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		return ocierr.RangeInvalid.Withf("range %q cannot be satisfied for a blob of %d bytes", r.Header.Get("Range"), size)
	}
	status, offset, length := http.StatusOK, int64(0), size
	if partial {
		status, offset, length = http.StatusPartialContent, rng.Start, rng.length()
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rng.Start, rng.End, size))
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return nil
	}
	rc, _, err := a.region.OpenBlob(ctx, route.Repo, d, offset)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.WriteHeader(status)
	if a.kernelCopy(r) {
		// CopyN wraps rc in a LimitedReader, which net/http still hands to
		// sendfile when rc is an *os.File.
		_, err = io.CopyN(w, rc, length)
	} else {
		bp := copyBuffers.Get().(*[]byte)
		_, err = io.CopyBuffer(writerOnly{w}, io.LimitReader(readerOnly{rc}, length), *bp)
		copyBuffers.Put(bp)
	}
	if err != nil {
		a.log.DebugContext(ctx, "blob body cut short", "digest", d, "error", err)
	}
	return nil
}

// setBlobHeaders sets the headers of every blob response.
func setBlobHeaders(w http.ResponseWriter, d digest.Digest) {
	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Cache-Control", "max-age=31536000")
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// readerOnly and writerOnly hide WriterTo and ReaderFrom, so io.CopyBuffer
// copies through the buffer instead of handing the copy to the kernel.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

// kernelCopy reports whether a blob GET should use sendfile (see CopyAuto).
func (a *API) kernelCopy(r *http.Request) bool {
	switch a.opts.BlobCopy {
	case CopySendfile:
		return true
	case CopyBuffered:
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err != nil || !ap.Addr().IsLoopback()
}

// deleteBlob serves DELETE of a blob (end-10).
func (a *API) deleteBlob(w http.ResponseWriter, r *http.Request, route Route) error {
	d, err := parseDigest(route.Ref)
	if err != nil {
		return err
	}
	if err := a.region.DeleteBlob(r.Context(), route.Repo, d); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// relayBlob answers a peer that fetches a blob of origin's feed through
// this region (feed.RelayOriginHeader; the repository does not link it
// here yet): from the content store when the bytes are here, else
// fetched from the origin and streamed on as they arrive. Bytes are
// content: the peer verifies them against d and applies the origin's
// record itself (links, tombstones), so no link here is needed.
func (a *API) relayBlob(w http.ResponseWriter, r *http.Request, route Route, d digest.Digest) error {
	ctx := r.Context()
	origin := r.Header.Get(feed.RelayOriginHeader)
	size, err := strconv.ParseInt(r.Header.Get(feed.RelaySizeHeader), 10, 64)
	if err != nil || size < 0 {
		return ocierr.SizeInvalid.Withf("%s: a blob size in bytes", feed.RelaySizeHeader)
	}
	if _, ok, err := a.region.HasContent(ctx, d); err != nil {
		return err
	} else if !ok {
		start := func(size int64) io.Writer {
			setBlobHeaders(w, d)
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.WriteHeader(http.StatusOK)
			return w
		}
		if r.Header.Get("Range") != "" {
			start = nil // a resumed transfer: fetched whole here, then served from the store
		}
		streamed, err := a.opts.Peers.RelayBlob(ctx, origin, route.Repo, d, size, start)
		if streamed {
			if err != nil {
				panic(http.ErrAbortHandler) // the peer got bytes that failed verification
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	got, err := a.region.ContentSize(ctx, d)
	if err != nil {
		return err
	}
	setBlobHeaders(w, d)
	rng, partial, err := parseRange(r.Header.Get("Range"), got)
	if err != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", got))
		return ocierr.RangeInvalid.Withf("range %q cannot be satisfied for a blob of %d bytes", r.Header.Get("Range"), got)
	}
	status, offset, length := http.StatusOK, int64(0), got
	if partial {
		status, offset, length = http.StatusPartialContent, rng.Start, rng.length()
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rng.Start, rng.End, got))
	}
	rc, err := a.region.OpenContent(ctx, d, offset)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	if _, err := io.CopyN(w, rc, length); err != nil {
		a.log.DebugContext(ctx, "relayed blob body cut short", "digest", d, "error", err)
	}
	return nil
}

// serveOffered answers a GET or HEAD of blob d of repo that the artifact
// cache is fetching here (region.OfferBlob): a HEAD from the size the
// manifest gave, a GET streamed as it lands (handled true). A GET with a
// Range waits for the blob, which is then served as usual (handled
// false, err nil). Not offered (offered false): nothing done.
func (a *API) serveOffered(w http.ResponseWriter, r *http.Request, repo string, d digest.Digest) (offered, handled bool, err error) {
	size, ok := a.region.OfferedSize(repo, d)
	if !ok {
		return false, false, nil
	}
	if r.Method == http.MethodHead {
		setBlobHeaders(w, d)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return true, true, nil
	}
	var start func(int64) io.Writer
	if r.Header.Get("Range") == "" {
		start = func(size int64) io.Writer {
			setBlobHeaders(w, d)
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.WriteHeader(http.StatusOK)
			// The headers go now, not with the first byte: a peer region
			// bounds its wait for them, and the bytes may take a while.
			_ = http.NewResponseController(w).Flush()
			return w
		}
	}
	_, streamed, err := a.region.FetchOffered(r.Context(), repo, d, start)
	if streamed {
		if err != nil {
			// The client got headers, maybe bytes, and not a verified
			// blob: break the connection rather than end the body.
			panic(http.ErrAbortHandler)
		}
		return true, true, nil
	}
	// Not offered any more: the fetch ended meanwhile (it is here, or
	// not); offered: fetched now, or err.
	return true, err != nil, err
}
