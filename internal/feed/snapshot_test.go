package feed

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// storeSnapshots serves a store's snapshot as region eastus.
type storeSnapshots struct{ db *meta.DB }

func (s storeSnapshots) Snapshot(ctx context.Context, format int, header func(meta.SnapshotHeader) error, emit func(*meta.SnapshotRepo) error) error {
	return s.db.Snapshot(ctx, "eastus", format, header, emit)
}

// TestASnapshotIsServedInTheLatestFormatBothRegionsRead: a joiner that
// names no format (an earlier version) gets format 2, bytes as hex; one
// that reads format 3 or later gets format 3, a manifest as text; one
// that names a format this region does not write, or no number, gets a
// clear error and no snapshot.
func TestASnapshotIsServedInTheLatestFormatBothRegionsRead(t *testing.T) {
	ctx := t.Context()
	db, err := meta.OpenSQLite(ctx, t.TempDir()+"/meta.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	payload := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	now := time.Now()
	if err := db.UpdateRepo(ctx, "a", func(tx *meta.Tx) error {
		if err := tx.EnsureRepository(ctx, "a", now); err != nil {
			return err
		}
		_, err := tx.PutManifest(ctx, &meta.Manifest{Repo: "a", Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json",
			Size: int64(len(payload)), Payload: payload, Created: now, Version: hlc.Version{Time: 1, Region: "eastus"}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	h := SnapshotHandler(storeSnapshots{db}, func(*http.Request) bool { return true }, func(context.Context) (bool, error) { return true, nil })
	get := func(query string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, SnapshotPath+query, nil))
		return rec
	}
	for _, c := range []struct {
		query    string
		format   int
		asText   bool
		refusedQ bool
	}{
		{"", 2, false, false},
		{"?format=2", 2, false, false},
		{"?format=3", 3, true, false},
		{"?format=9", 3, true, false},
		{"?format=1", 0, false, true},
		{"?format=three", 0, false, true},
	} {
		rec := get(c.query)
		if c.refusedQ {
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "REQUEST_INVALID") {
				t.Fatalf("%q: %d %s; want 400 REQUEST_INVALID", c.query, rec.Code, rec.Body)
			}
			continue
		}
		lines := strings.Split(strings.TrimSpace(rec.Body.String()), "\n")
		var head meta.SnapshotHeader
		if rec.Code != http.StatusOK || len(lines) != 3 || json.Unmarshal([]byte(lines[0]), &head) != nil || head.Format != c.format {
			t.Fatalf("%q: %d, %d lines, header %s; want format %d", c.query, rec.Code, len(lines), lines[0], c.format)
		}
		if text := strings.Contains(lines[1], `{"t":`); text != c.asText {
			t.Fatalf("%q: the manifest sent as text %v, want %v: %s", c.query, text, c.asText, lines[1])
		}
	}
}
