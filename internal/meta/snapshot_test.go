package meta_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
)

// TestASnapshotLoadedIntoAnEmptyStoreMakesItTheSame: on both dialects, a
// store's snapshot (sent as JSON, as a peer would) loaded into an empty
// store gives the same summary tree; the header names the feed head and
// applied marks; a row naming a column the store lacks is refused and
// changes nothing; a snapshot loaded again, or over a later write,
// changes nothing (last-writer-wins). It is encoded as the snapshot
// handler encodes it (AppendJSON: a SQLite store's rows come encoded by
// SQLite, bytes as hex, or in format 3 as text where they are text), and
// manifests whose bytes JSON must escape (quotes, a backslash, <>&,
// control and non-ASCII characters, a NUL, invalid UTF-8) are loaded
// byte for byte, in either format a region serves.
func TestASnapshotLoadedIntoAnEmptyStoreMakesItTheSame(t *testing.T) {
	for _, format := range []int{meta.SnapshotFormatDefault, meta.SnapshotFormat} {
		t.Run(fmt.Sprint("format", format), func(t *testing.T) { snapshotLoadedIntoAnEmptyStore(t, format) })
	}
}

func snapshotLoadedIntoAnEmptyStore(t *testing.T, format int) {
	eachDialect(t, func(t *testing.T, src *meta.DB) {
		ctx := t.Context()
		now := time.Now()
		v := func(ms int64, region string) hlc.Version {
			return hlc.Version{Time: hlc.TimeAt(time.UnixMilli(ms)), Region: region}
		}
		payload := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a","digest":"sha256:` + digest.FromString("c").Encoded() + `","size":1},"layers":[]}`)
		d := digest.FromBytes(payload)
		odd := []byte("{\"annotations\":{\"a\":\"q\\\" \\\\ <&> \\u0001 \u00e9\u6771\u2028\"}}\xff\x00\t")
		// Text with what JSON escapes, and text but for one NUL, or but
		// for invalid UTF-8: the first travels as text in format 3, the
		// others as hex.
		texts := [][]byte{
			[]byte("{\"a\":\"q\\\" \\\\ <&>\u0001\x7f \u00e9\u6771\u2028\U0001F600\"}\n\t"),
			[]byte("{\"a\":\"\x00\"}"),
			[]byte("{\"a\":\"\xc3\"}"),
		}
		oddD := digest.FromBytes(odd)
		gone := digest.FromString("deleted manifest")
		for _, repo := range []string{"snap/a", "snap/b"} {
			err := src.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
				if err := tx.EnsureRepository(ctx, repo, now); err != nil {
					return err
				}
				if err := tx.LinkBlob(ctx, repo, digest.FromString("c"), 1, v(1000, "eastus"), now); err != nil {
					return err
				}
				if _, err := tx.PutManifest(ctx, &meta.Manifest{Repo: repo, Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json",
					Size: int64(len(payload)), Payload: payload, Created: now, Version: v(1000, "eastus")}); err != nil {
					return err
				}
				if _, err := tx.PutManifest(ctx, &meta.Manifest{Repo: repo, Digest: oddD, MediaType: "application/vnd.oci.image.manifest.v1+json",
					Size: int64(len(odd)), Payload: odd, Annotations: map[string]string{"é\"<": "\x01\u2028"}, Created: now, Version: v(1000, "eastus")}); err != nil {
					return err
				}
				for _, p := range texts {
					if _, err := tx.PutManifest(ctx, &meta.Manifest{Repo: repo, Digest: digest.FromBytes(p), MediaType: "application/vnd.oci.image.manifest.v1+json",
						Size: int64(len(p)), Payload: p, Created: now, Version: v(1000, "eastus")}); err != nil {
						return err
					}
				}
				if _, err := tx.SetTag(ctx, repo, "v1", d, v(1001, "westeurope"), now); err != nil {
					return err
				}
				_, err := tx.TombstoneManifest(ctx, repo, gone, v(1002, "eastus"), now)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := src.Update(ctx, func(tx *meta.Tx) error { return tx.SetCursor(ctx, "westeurope", 42, now) }); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		var h meta.SnapshotHeader
		n := 0
		if err := src.Snapshot(ctx, "eastus", format, func(hh meta.SnapshotHeader) error { h = hh; return enc.Encode(hh) },
			func(sr *meta.SnapshotRepo) error {
				n++
				b, err := sr.AppendJSON(nil)
				buf.Write(append(b, '\n'))
				return err
			}); err != nil {
			t.Fatal(err)
		}
		if h.Region != "eastus" || h.Schema != meta.SchemaVersion() || h.Applied["westeurope"] != 42 || n != 2 || h.Format != format {
			t.Fatalf("header %+v, %d repositories", h, n)
		}
		// A SQLite store sends a manifest that is text as text from format
		// 3 (half the size of its hex), and only text it carries exactly.
		if !src.Shared() {
			asText := bytes.Count(buf.Bytes(), []byte(`{"t":`))
			// Per repository: the image manifest, texts[0] and the deleted
			// manifest's empty payload.
			if want := map[int]int{2: 0, 3: 2 * 3}[format]; asText != want {
				t.Fatalf("format %d: %d bytes values sent as text, want %d", format, asText, want)
			}
		}
		dst, err := meta.OpenSQLite(ctx, t.TempDir()+"/dst.db")
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		load := func(data []byte) error {
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			var hh meta.SnapshotHeader
			if err := dec.Decode(&hh); err != nil {
				return err
			}
			for dec.More() {
				var sr meta.SnapshotRepo
				if err := dec.Decode(&sr); err != nil {
					return err
				}
				if err := dst.Update(ctx, func(tx *meta.Tx) error { return tx.LoadSnapshotRepo(ctx, &sr, "southeastasia", now) }); err != nil {
					return err
				}
			}
			return nil
		}
		// A column this store does not have: refused, nothing stored.
		bad := bytes.Replace(buf.Bytes(), []byte(`"media_type"`), []byte(`"no_such_column"`), 1)
		if err := load(bad); err == nil {
			t.Fatal("a snapshot naming an unknown column was loaded")
		}
		if empty, err := dst.Empty(ctx); err != nil || !empty {
			t.Fatalf("a refused snapshot left rows: empty %v (%v)", empty, err)
		}
		for range 2 { // loaded twice: the same
			if err := load(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			want, _ := src.SummaryTree(ctx)
			got, _ := dst.SummaryTree(ctx)
			if want.Root != got.Root {
				t.Fatalf("after loading the snapshot: summary root %s, the source's %s", got.Root, want.Root)
			}
		}
		for _, repo := range []string{"snap/a", "snap/b"} {
			m, err := dst.GetManifest(ctx, repo, oddD)
			if err != nil || !bytes.Equal(m.Payload, odd) || m.Annotations["é\"<"] != "\x01\u2028" {
				t.Fatalf("the manifest loaded from the snapshot is not the one stored: %+v %v", m, err)
			}
			for _, p := range texts {
				m, err := dst.GetManifest(ctx, repo, digest.FromBytes(p))
				if err != nil || !bytes.Equal(m.Payload, p) {
					t.Fatalf("the manifest %q loaded from the snapshot is %+v (%v)", p, m, err)
				}
			}
		}
		p, err := dst.Presence(ctx, "snap/a", d)
		if _, here := p["southeastasia"]; err != nil || !here {
			t.Fatalf("a loaded manifest is not present in the store that loaded it: %v %v", p, err)
		}
		// A later write of a tag here is not undone by the snapshot.
		if err := dst.UpdateRepo(ctx, "snap/a", func(tx *meta.Tx) error {
			_, err := tx.SetTag(ctx, "snap/a", "v1", gone, v(2000, "southeastasia"), now)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := load(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		if tag, err := dst.TagRecord(ctx, "snap/a", "v1"); err != nil || tag.Digest != gone {
			t.Fatalf("the snapshot undid a later tag write: %+v %v", tag, err)
		}
	})
}

// TestASQLiteSnapshotCarriesBytesWhereverTheyAre: SQLite keeps bytes
// written to a column of any declared type as bytes; the store's own
// encoding of a snapshot carries them (as {"x": hex}) and a joiner loads
// them as they were, rather than the snapshot failing on a value JSON
// cannot hold: in the repository where the read first meets them, in
// one read after it (the table then read with every value tested), and
// the text of a repository without any stays text.
func TestASQLiteSnapshotCarriesBytesWhereverTheyAre(t *testing.T) {
	ctx := t.Context()
	path := t.TempDir() + "/meta.db"
	src, err := meta.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	repos := []string{"snap/a", "snap/b", "snap/c"} // read in this order; c holds text
	for _, repo := range repos {
		if err := src.UpdateRepo(ctx, repo, func(tx *meta.Tx) error {
			return tx.EnsureRepository(ctx, repo, time.Now())
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Bytes in a TEXT column, as an older writer could have left them.
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	odd := []byte{0, 0xff, '"', 'x'}
	want := map[string]any{"snap/a": odd, "snap/b": append([]byte("b"), odd...), "snap/c": "sha256:text"}
	for _, repo := range repos {
		if _, err := raw.ExecContext(ctx, `INSERT INTO tags (repo, name, digest, version, origin, updated_at, deleted) VALUES ($1, 'v1', $2, 5, 'eastus', 0, 0)`, repo, want[repo]); err != nil {
			t.Fatal(err)
		}
	}
	var lines [][]byte
	if err := src.Snapshot(ctx, "eastus", meta.SnapshotFormat, func(meta.SnapshotHeader) error { return nil }, func(sr *meta.SnapshotRepo) error {
		line, err := sr.AppendJSON(nil)
		lines = append(lines, line)
		return err
	}); err != nil {
		t.Fatalf("snapshot with bytes in a text column: %v", err)
	}
	dstPath := t.TempDir() + "/dst.db"
	dst, err := meta.OpenSQLite(ctx, dstPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for _, line := range lines {
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var sr meta.SnapshotRepo
		if err := dec.Decode(&sr); err != nil {
			t.Fatal(err)
		}
		if err := dst.Update(ctx, func(tx *meta.Tx) error { return tx.LoadSnapshotRepo(ctx, &sr, "westeurope", time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	got, err := sql.Open("sqlite", "file:"+dstPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	for _, repo := range repos {
		var typ string
		var val []byte
		if err := got.QueryRowContext(ctx, `SELECT typeof(digest), digest FROM tags WHERE repo = $1 AND name = 'v1'`, repo).Scan(&typ, &val); err != nil {
			t.Fatalf("%s: %v", repo, err)
		}
		switch w := want[repo].(type) {
		case []byte:
			if typ != "blob" || !bytes.Equal(val, w) {
				t.Errorf("%s: loaded as a %s %q, want the bytes %q", repo, typ, val, w)
			}
		case string:
			if typ != "text" || string(val) != w {
				t.Errorf("%s: loaded as a %s %q, want the text %q", repo, typ, val, w)
			}
		}
	}
}

// TestARegionServesTheLatestSnapshotFormatBothRead: the format served to a
// joiner that reads formats up to asked.
func TestARegionServesTheLatestSnapshotFormatBothRead(t *testing.T) {
	for _, c := range []struct {
		asked, want int
		ok          bool
	}{
		{0, 2, true}, // names none: an earlier version, which reads 2
		{1, 1, false},
		{2, 2, true},
		{3, 3, true},
		{4, 3, true},
	} {
		got, ok := meta.SnapshotFormatServed(c.asked)
		if got != c.want || ok != c.ok {
			t.Errorf("asked %d: served %d %v, want %d %v", c.asked, got, ok, c.want, c.ok)
		}
	}
	if meta.SnapshotFormat != 3 || !meta.SnapshotFormatRead(1) || !meta.SnapshotFormatRead(3) || meta.SnapshotFormatRead(4) {
		t.Error("this version reads formats 1 to 3")
	}
}
