package mgmtapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// AuditEntry is one audit line with the region that recorded it.
type AuditEntry struct {
	Region string `json:"region"`
	meta.AuditEntry
}

// AuditLog answers GET /_georeg/v1/audit: newest first.
type AuditLog struct {
	Entries     []AuditEntry `json:"entries"`
	Unreachable []string     `json:"unreachable,omitempty"`
}

// audit serves GET /_georeg/v1/audit?since=24h&n=100[&local=true]: the
// audit log of every region (each keeps its own), or this region's with
// local=true.
func (a *API) audit(ctx context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	since := 24 * time.Hour
	if s := q.Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, ocierr.RequestInvalid.Withf("since=%q: give a duration such as 30m, 24h or 720h", s)
		}
		since = d
	}
	n := 100
	if s := q.Get("n"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > 10000 {
			return nil, ocierr.PaginationNumberInvalid.Withf("n=%q: give 1 to 10000", s)
		}
	}
	from := time.Now().Add(-since)
	if q.Get("local") == "true" {
		return a.localAudit(ctx, from, n)
	}
	all, err := a.replications(ctx)
	if err != nil {
		return nil, err
	}
	out := AuditLog{Entries: []AuditEntry{}}
	for _, rep := range all {
		var got *AuditLog
		if rep.Name == a.region.Name() {
			got, err = a.localAudit(ctx, from, n)
		} else {
			got, err = a.remoteAudit(ctx, rep.Name, rep.Endpoint, q.Get("since"), n)
		}
		if err != nil {
			out.Unreachable = append(out.Unreachable, rep.Name)
			continue
		}
		out.Entries = append(out.Entries, got.Entries...)
	}
	sort.SliceStable(out.Entries, func(i, j int) bool { return out.Entries[i].At.After(out.Entries[j].At) })
	if len(out.Entries) > n {
		out.Entries = out.Entries[:n]
	}
	return out, nil
}

func (a *API) localAudit(ctx context.Context, since time.Time, n int) (*AuditLog, error) {
	es, err := a.region.Audit(ctx, since, n)
	if err != nil {
		return nil, err
	}
	out := &AuditLog{Entries: []AuditEntry{}}
	for _, e := range es {
		out.Entries = append(out.Entries, AuditEntry{Region: a.region.Name(), AuditEntry: e})
	}
	return out, nil
}

func (a *API) remoteAudit(ctx context.Context, name, endpoint, since string, n int) (*AuditLog, error) {
	if since == "" {
		since = "24h"
	}
	var out AuditLog
	return &out, a.peerGet(ctx, name, endpoint, fmt.Sprintf("/_georeg/v1/audit?local=true&since=%s&n=%d", url.QueryEscape(since), n), 32<<20, &out)
}
