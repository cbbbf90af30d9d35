package feed

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// SnapshotPath is where a region serves its snapshot to a region that
// joins (meta.DB.Snapshot): newline-delimited JSON, a meta.SnapshotHeader
// then one meta.SnapshotRepo per repository, then SnapshotEnd: a
// snapshot without its end was cut short.
const SnapshotPath = "/_georeg/v1/snapshot"

// SnapshotNotReady is the state in the detail of the UNAVAILABLE a region
// that has never been Ready answers a snapshot request with: in a registry
// whose regions all start empty, every region's first request meets it.
const SnapshotNotReady = "not-ready"

// SnapshotEnd is a snapshot's last line.
type SnapshotEnd struct {
	End          bool `json:"end"`
	Repositories int  `json:"repositories"`
}

// SnapshotSource is what the snapshot handler reads (region.Region).
type SnapshotSource interface {
	Snapshot(ctx context.Context, format int, header func(meta.SnapshotHeader) error, emit func(*meta.SnapshotRepo) error) error
}

// SnapshotHandler serves GET SnapshotPath to requests authorized admits
// (a member region's token), while ready says the region is Ready: a
// region still syncing would hand on what it lacks.
func SnapshotHandler(src SnapshotSource, authorized func(*http.Request) bool, ready func(context.Context) (bool, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r) {
			ocierr.Write(w, r, ocierr.Unauthorized.Withf("snapshots are for member regions: send a region token (peerauth)"))
			return
		}
		asked := 0
		if q := r.URL.Query().Get("format"); q != "" {
			n, err := strconv.Atoi(q)
			if err != nil || n < 1 {
				ocierr.Write(w, r, ocierr.RequestInvalid.Withf("snapshot format %q: want a format number, the latest the joining region reads", q))
				return
			}
			asked = n
		}
		format, ok := meta.SnapshotFormatServed(asked)
		if !ok {
			ocierr.Write(w, r, ocierr.RequestInvalid.Withf("snapshot format %d: this region writes formats %d to %d", asked, meta.SnapshotFormatDefault, meta.SnapshotFormat))
			return
		}
		if ok, err := ready(r.Context()); err != nil || !ok {
			ocierr.Write(w, r, ocierr.Unavailable.WithDetail("this region is not Ready: a joining region takes its snapshot from a Ready region",
				map[string]string{"state": SnapshotNotReady}))
			return
		}
		bw := bufio.NewWriterSize(w, 256<<10)
		enc := json.NewEncoder(bw)
		started, n := false, 0
		var buf []byte
		err := src.Snapshot(r.Context(), format, func(h meta.SnapshotHeader) error {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			return enc.Encode(h)
		}, func(sr *meta.SnapshotRepo) error {
			// Encoded without reflection (the bulk of a snapshot), the
			// same bytes as enc.Encode.
			n++
			var err error
			if buf, err = sr.AppendJSON(buf[:0]); err != nil {
				return err
			}
			_, err = bw.Write(append(buf, '\n'))
			return err
		})
		if err == nil {
			err = enc.Encode(SnapshotEnd{End: true, Repositories: n})
		}
		if err != nil && !started {
			oe, _ := ocierr.From(err)
			ocierr.Write(w, r, oe)
			return
		}
		if err != nil {
			// The peer has a partial snapshot: break the connection so it
			// cannot take it for a whole one.
			panic(http.ErrAbortHandler)
		}
		_ = bw.Flush()
	})
}
