package region_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	contentfs "github.com/georeg/georeg/internal/content/fs"
	"github.com/georeg/georeg/internal/content/fs/crashfs"
	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
	"github.com/georeg/georeg/internal/region"
)

// Invariant 8 without a kernel: kill -9 keeps the page cache, so it
// cannot show that a push is acknowledged only after its bytes and their
// names are synced. Here the content store runs on crashfs, which after a
// simulated crash holds only what was synced, and a scenario (a push; a
// replicated apply) is crashed at each of its sync points in turn and
// after its end. The metadata store is SQLite with synchronous=FULL: a
// commit is synced before it returns, so its state after a crash is its
// committed state, taken at the crash point with VACUUM INTO.
//
// After each crash the region reopens on what survived and must hold
// every object acknowledged before the crash (a push that returned; a
// record below the peer cursor, which the peer will not send again),
// whole, and nothing its metadata names may be missing or half-written:
// every linked blob reads back as its digest, every live manifest has its
// blobs and children, every live tag its manifest.

// ackedObject is one thing a scenario was told is stored.
type ackedObject struct {
	repo, tag string
	blob      []byte        // a blob with these bytes
	manifest  digest.Digest // a manifest
	seq       int64         // replicated: the peer record that carried it (0 for a push)
}

// crashScenario does its writes to r, calling ack after each one the
// caller of a registry would see acknowledged.
type crashScenario func(ctx context.Context, t *testing.T, r *region.Region, ack func(ackedObject))

func crashImage(seed string, layerSize int) (cfg, layer, manifest []byte) {
	rng := rand.New(rand.NewPCG(uint64(len(seed)), uint64(layerSize)))
	cfg = []byte(`{"architecture":"amd64","os":"linux","seed":"` + seed + `"}`)
	layer = make([]byte, layerSize)
	for i := range layer {
		layer[i] = byte(rng.Uint32())
	}
	manifest = fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer))
	return cfg, layer, manifest
}

func crashIndex(children ...[]byte) []byte {
	var ds []string
	for _, c := range children {
		ds = append(ds, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"architecture":"amd64","os":"linux"}}`,
			digest.FromBytes(c), len(c)))
	}
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}`, join(ds))
}

const ociManifest, ociIndex = "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json"

// pushScenario: a monolithic blob upload, a chunked one across three
// requests, a tagged image, then an index over it and a second image.
func pushScenario(ctx context.Context, t *testing.T, r *region.Region, ack func(ackedObject)) {
	cfg, layer, m := crashImage("push", 300_000)
	cfg2, layer2, m2 := crashImage("push-2", 70_000)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range [][]byte{cfg, cfg2, layer2} {
		_, err := r.PutBlob(ctx, "app", digest.FromBytes(b), int64(len(b)), bytes.NewReader(b))
		must(err)
		ack(ackedObject{repo: "app", blob: b})
	}
	id, err := r.StartUpload(ctx, "app")
	must(err)
	_, err = r.AppendUpload(ctx, "app", id, chunk(layer[:100_000]))
	must(err)
	_, err = r.AppendUpload(ctx, "app", id, chunk(layer[100_000:250_000]))
	must(err)
	_, err = r.FinishUpload(ctx, "app", id, digest.FromBytes(layer), chunk(layer[250_000:]))
	must(err)
	ack(ackedObject{repo: "app", blob: layer})
	for _, img := range []struct {
		ref     string
		mt      string
		payload []byte
	}{{"v1", ociManifest, m}, {digest.FromBytes(m2).String(), ociManifest, m2}, {"multi", ociIndex, crashIndex(m, m2)}} {
		res, err := r.PutManifest(ctx, "app", img.ref, img.mt, img.payload)
		must(err)
		tag := img.ref
		if oci.IsDigest(tag) {
			tag = ""
		}
		ack(ackedObject{repo: "app", manifest: res.Digest, tag: tag})
	}
}

// applyScenario: westeurope's records for an image index with two
// children, applied in the replication order (blobs, children, index,
// tag), each blob fetched through the staging a replicated fetch uses.
func applyScenario(ctx context.Context, t *testing.T, r *region.Region, ack func(ackedObject)) {
	cfg, layer, m := crashImage("apply", 200_000)
	cfg2, layer2, m2 := crashImage("apply-2", 80_000)
	idx := crashIndex(m, m2)
	seq := int64(0)
	version := func() hlc.Version { return hlc.Version{Time: (1_700_000_000_000 + seq) << 16, Region: "westeurope"} }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range [][]byte{cfg, layer, cfg2, layer2} {
		seq++
		d := digest.FromBytes(b)
		open := func(_ context.Context, off int64) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b[off:])), nil
		}
		_, err := r.FetchBlob(ctx, region.FetchStagingID(d), d, int64(len(b)), open, nil)
		must(err)
		must(r.ApplyBlob(ctx, "westeurope", seq, "app", d, version(), -1, nil))
		ack(ackedObject{repo: "app", blob: b, seq: seq})
	}
	for _, mf := range []struct {
		mt, tag string
		payload []byte
	}{{ociManifest, "", m}, {ociManifest, "", m2}, {ociIndex, "multi", idx}} {
		seq++
		d := digest.FromBytes(mf.payload)
		must(r.ApplyManifest(ctx, "westeurope", seq, "app", d, mf.mt, mf.payload, version(), mf.tag))
		ack(ackedObject{repo: "app", manifest: d, seq: seq})
		if mf.tag != "" {
			seq++
			must(r.ApplyTag(ctx, "westeurope", seq, "app", mf.tag, d, version(), true))
			ack(ackedObject{repo: "app", manifest: d, tag: mf.tag, seq: seq})
		}
	}
}

// crashed is what a crash left: the content files, the metadata, and
// what had been acknowledged.
type crashed struct {
	content *crashfs.FS
	meta    string // a SQLite file
	acked   []ackedObject
}

// runCrashing runs scenario on a fresh region whose content is on
// crashfs, crashing at sync number at (counting from 1; 0 or past the
// last: after the end). It returns the crash and how many syncs the run
// made.
func runCrashing(t *testing.T, scenario crashScenario, at int) (crashed, int) {
	ctx := t.Context()
	dir := t.TempDir()
	const root = "/content"
	fsys := crashfs.New()
	db, err := meta.OpenSQLite(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	backend, err := contentfs.OpenFS(root, fsys)
	if err != nil {
		t.Fatal(err)
	}
	r, err := region.New(ctx, region.Config{Name: "eastus", DataDir: dir}, slog.New(slog.DiscardHandler), db, content.New(backend))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var (
		mu    sync.Mutex
		acked []ackedObject
		syncs int
		out   crashed
	)
	crash := func() {
		out.content = fsys.Crash()
		out.meta = filepath.Join(t.TempDir(), "crashed.db")
		snapshot(t, filepath.Join(dir, "meta.db"), out.meta)
		out.acked = slices.Clone(acked)
	}
	fsys.OnSync(func(string) {
		mu.Lock()
		defer mu.Unlock()
		syncs++
		if syncs == at {
			crash()
		}
	})
	scenario(ctx, t, r, func(o ackedObject) {
		mu.Lock()
		acked = append(acked, o)
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	if out.content == nil {
		crash()
	}
	return out, syncs
}

// snapshot copies the committed state of the SQLite database at from to
// a new file at to.
func snapshot(t *testing.T, from, to string) {
	db, err := sql.Open("sqlite", "file:"+from+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`VACUUM INTO ?`, to); err != nil {
		t.Fatal(err)
	}
}

// checkCrash reopens a region on what a crash left and checks it.
func checkCrash(t *testing.T, c crashed) {
	ctx := t.Context()
	const root = "/content"
	db, err := meta.OpenSQLite(ctx, c.meta)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := contentfs.OpenFS(root, c.content)
	if err != nil {
		t.Fatal(err)
	}
	r, err := region.New(ctx, region.Config{Name: "eastus", DataDir: t.TempDir()}, slog.New(slog.DiscardHandler), db, content.New(backend))
	if err != nil {
		t.Fatalf("reopen after the crash: %v", err)
	}
	defer r.Close()
	raw, err := sql.Open("sqlite", "file:"+c.meta+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	// The peer resends nothing below its cursor: all of that must be here.
	var cursor int64
	_ = raw.QueryRow(`SELECT seq FROM peer_cursors WHERE peer = 'westeurope'`).Scan(&cursor)
	for _, o := range c.acked {
		if o.seq > cursor {
			t.Errorf("acknowledged record %d is above westeurope's cursor %d after the crash: the cursor moved before it was durable", o.seq, cursor)
		}
		switch {
		case o.blob != nil:
			if err := wholeBlob(ctx, r, o.repo, digest.FromBytes(o.blob), int64(len(o.blob))); err != nil {
				t.Errorf("acknowledged blob lost: %v", err)
			}
		case o.tag != "":
			if d, err := r.ResolveTag(ctx, o.repo, o.tag); err != nil || d != o.manifest {
				t.Errorf("acknowledged tag %s:%s lost: %s %v", o.repo, o.tag, d, err)
			}
		default:
			if _, err := r.GetManifest(ctx, o.repo, o.manifest.String()); err != nil {
				t.Errorf("acknowledged manifest %s lost: %v", o.manifest, err)
			}
		}
	}

	// Nothing the metadata names is missing or half-written.
	rows, err := raw.Query(`SELECT repo, digest, size FROM blobs`)
	if err != nil {
		t.Fatal(err)
	}
	type blobRow struct {
		repo, d string
		size    int64
	}
	var blobs []blobRow
	for rows.Next() {
		var b blobRow
		if err := rows.Scan(&b.repo, &b.d, &b.size); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, b)
	}
	rows.Close()
	for _, b := range blobs {
		if err := wholeBlob(ctx, r, b.repo, digest.Digest(b.d), b.size); err != nil {
			t.Errorf("a linked blob is not whole: %v", err)
		}
	}
	rows, err = raw.Query(`SELECT repo, digest, media_type, payload FROM manifests WHERE deleted = 0`)
	if err != nil {
		t.Fatal(err)
	}
	type manifestRow struct {
		repo, d, mt string
		payload     []byte
	}
	var manifests []manifestRow
	for rows.Next() {
		var m manifestRow
		if err := rows.Scan(&m.repo, &m.d, &m.mt, &m.payload); err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, m)
	}
	rows.Close()
	for _, m := range manifests {
		parsed, err := oci.ParseManifest(m.mt, m.payload)
		if err != nil {
			t.Fatalf("stored manifest %s: %v", m.d, err)
		}
		for _, b := range parsed.Blobs() {
			if err := wholeBlob(ctx, r, m.repo, b.Digest, b.Size); err != nil {
				t.Errorf("manifest %s is served without its blob: %v", m.d, err)
			}
		}
		for _, child := range parsed.Manifests {
			if _, err := r.GetManifest(ctx, m.repo, child.Digest.String()); err != nil {
				t.Errorf("index %s is served without its child: %v", m.d, err)
			}
		}
	}
	rows, err = raw.Query(`SELECT repo, name, digest FROM tags WHERE deleted = 0`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var repo, tag, d string
		if err := rows.Scan(&repo, &tag, &d); err != nil {
			t.Fatal(err)
		}
		if _, err := r.GetManifest(ctx, repo, d); err != nil {
			t.Errorf("tag %s:%s points at a manifest not here: %v", repo, tag, err)
		}
	}
}

// wholeBlob checks that repo serves blob d with size bytes that hash to d.
func wholeBlob(ctx context.Context, r *region.Region, repo string, d digest.Digest, size int64) error {
	rc, n, err := r.OpenBlob(ctx, repo, d, 0)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", d, repo, err)
	}
	defer rc.Close()
	v := d.Verifier()
	got, err := io.Copy(v, rc)
	switch {
	case err != nil:
		return fmt.Errorf("%s: read: %w", d, err)
	case n != size || got != size:
		return fmt.Errorf("%s: %d bytes (says %d), want %d", d, got, n, size)
	case !v.Verified():
		return fmt.Errorf("%s: the bytes do not hash to it", d)
	}
	return nil
}

func TestInvariant8AcknowledgedWritesSurviveACrashAtEverySync(t *testing.T) {
	for _, sc := range []struct {
		name string
		run  crashScenario
	}{{"push", pushScenario}, {"replicated apply", applyScenario}} {
		t.Run(sc.name, func(t *testing.T) {
			last, syncs := runCrashing(t, sc.run, 0)
			if syncs < 8 {
				t.Fatalf("the scenario synced %d times; it writes several blobs, each synced with its directory", syncs)
			}
			if len(last.acked) == 0 {
				t.Fatal("nothing was acknowledged")
			}
			checkCrash(t, last)
			if t.Failed() {
				t.Fatalf("crashed after the end (%d syncs), with %d objects acknowledged", syncs, len(last.acked))
			}
			for at := 1; at <= syncs; at++ {
				c, _ := runCrashing(t, sc.run, at)
				checkCrash(t, c)
				if t.Failed() {
					t.Fatalf("crashed before sync %d of %d, with %d objects acknowledged", at, syncs, len(c.acked))
				}
			}
		})
	}
}
