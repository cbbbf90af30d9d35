package transfer_test

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/transfer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"))
}

// upstream is a registry to import from: go-containerregistry's
// registry (a complete OCI registry in memory) on loopback, which serves
// wrong bytes for the blob named in corrupt, as a broken or hostile
// registry would.
type upstream struct {
	host    string
	corrupt atomic.Pointer[string]
}

func startUpstream(t *testing.T) *upstream {
	u := &upstream{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := u.corrupt.Load(); c != nil && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+*c) {
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			body[len(body)/2] ^= 0xff
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u.host = strings.TrimPrefix(srv.URL, "http://")
	return u
}

// pushIndex writes a random two-platform index to the upstream as
// repo:tag and returns it.
func (u *upstream) pushIndex(t *testing.T, repo, tag string) v1.ImageIndex {
	idx, err := random.Index(300_000, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(u.host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

func startImporter(t *testing.T) (*region.Region, *transfer.Importer) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	r, err := region.Open(t.Context(), region.Config{Name: "eastus", DataDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	im := transfer.New(r, nil, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- im.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		r.Close()
	})
	return r, im
}

// finish waits (60 s at most) for job id to end and returns it.
func finish(t *testing.T, im *transfer.Importer, id string) *transfer.Job {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		job, err := im.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if job.State != transfer.Running {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("import still running after 60 s: %+v", job)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
}

// holdsBlob checks that r serves blob d in repo whole.
func holdsBlob(t *testing.T, r *region.Region, repo string, d digest.Digest) {
	t.Helper()
	rc, _, err := r.OpenBlob(t.Context(), repo, d, 0)
	if err != nil {
		t.Fatalf("blob %s: %v", d, err)
	}
	defer rc.Close()
	v := d.Verifier()
	if _, err := io.Copy(v, rc); err != nil || !v.Verified() {
		t.Fatalf("blob %s is not whole: %v", d, err)
	}
}

func TestAnImportCopiesEveryPlatformVerifiedAndReusesWhatIsHere(t *testing.T) {
	up := startUpstream(t)
	idx := up.pushIndex(t, "src/app", "v1")
	r, im := startImporter(t)
	ctx := t.Context()

	job, err := im.Start(ctx, transfer.Request{Source: "http://" + up.host + "/src/app:v1", Image: "imported/app:v1"})
	if err != nil {
		t.Fatal(err)
	}
	job = finish(t, im, job.ID)
	want, _ := idx.Digest()
	if job.State != transfer.Succeeded || job.Digest != want.String() {
		t.Fatalf("import: %+v, want %s", job, want)
	}
	if d, err := r.ResolveTag(ctx, "imported/app", "v1"); err != nil || d.String() != want.String() {
		t.Fatalf("imported/app:v1 is %s (%v), want %s", d, err, want)
	}
	im2, _ := idx.IndexManifest()
	blobs := 0
	for _, desc := range im2.Manifests {
		if _, err := r.GetManifest(ctx, "imported/app", desc.Digest.String()); err != nil {
			t.Fatalf("child %s: %v", desc.Digest, err)
		}
		img, _ := idx.Image(desc.Digest)
		m, _ := img.Manifest()
		for _, l := range append(m.Layers, m.Config) {
			holdsBlob(t, r, "imported/app", digest.Digest(l.Digest.String()))
			blobs++
		}
	}
	if job.Blobs != blobs || job.BlobsDone != blobs || job.Manifests != 3 {
		t.Fatalf("job counts %d blobs (%d done), %d manifests; the index has %d blobs, 3 manifests", job.Blobs, job.BlobsDone, job.Manifests, blobs)
	}

	// Again, to another tag: nothing is fetched twice.
	job, err = im.Start(ctx, transfer.Request{Source: "http://" + up.host + "/src/app:v1", Image: "imported/app:again"})
	if err != nil {
		t.Fatal(err)
	}
	if job = finish(t, im, job.ID); job.State != transfer.Succeeded || job.Reused != blobs {
		t.Fatalf("second import: %+v, want all %d blobs reused", job, blobs)
	}

	// Into another repository: the bytes are here, linked in another
	// repository only; they are linked in this one (under a lease, looked
	// for once), not fetched again, and served whole.
	fetched := job.BytesFetched
	job, err = im.Start(ctx, transfer.Request{Source: "http://" + up.host + "/src/app:v1", Image: "copy/app:v1"})
	if err != nil {
		t.Fatal(err)
	}
	if job = finish(t, im, job.ID); job.State != transfer.Succeeded || job.BytesFetched != 0 || job.BlobsDone != blobs {
		t.Fatalf("an import into another repository of bytes held here: %+v (the first fetched %d bytes)", job, fetched)
	}
	for _, desc := range im2.Manifests {
		img, _ := idx.Image(desc.Digest)
		m, _ := img.Manifest()
		for _, l := range append(m.Layers, m.Config) {
			holdsBlob(t, r, "copy/app", digest.Digest(l.Digest.String()))
		}
	}

	// The tag now holds something else upstream: only --force moves it.
	up.pushIndex(t, "src/app", "v1")
	_, err = im.Start(ctx, transfer.Request{Source: "http://" + up.host + "/src/app:v1", Image: "imported/app:v1"})
	if !ocierr.AlreadyExists.Is(err) {
		t.Fatalf("import over a tag that points elsewhere: %v, want ALREADY_EXISTS", err)
	}
	if d, _ := r.ResolveTag(ctx, "imported/app", "v1"); d.String() != want.String() {
		t.Fatalf("a refused import moved the tag to %s", d)
	}
}

// TestAnImportOfWrongBytesStoresNothing: an upstream that serves a blob
// whose bytes do not hash to its digest fails the import; the region
// keeps neither the blob nor the image (invariant 1). Two layers refuse
// the bytes: go-containerregistry's reader verifies as it reads, and the
// region's content store verifies before it commits (mutate/01 breaks
// the second alone, and this test still passes: the first holds).
func TestAnImportOfWrongBytesStoresNothing(t *testing.T) {
	up := startUpstream(t)
	img, err := random.Image(200_000, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(up.host+"/src/bad:v1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	bad := ld.String()
	up.corrupt.Store(&bad)
	r, im := startImporter(t)
	ctx := t.Context()

	job, err := im.Start(ctx, transfer.Request{Source: "http://" + up.host + "/src/bad:v1"})
	if err != nil {
		t.Fatal(err)
	}
	job = finish(t, im, job.ID)
	if job.State != transfer.Failed || !strings.Contains(job.Error, bad) {
		t.Fatalf("import of wrong bytes: %+v, want failed naming %s", job, bad)
	}
	if _, held, err := r.HasContent(ctx, digest.Digest(bad)); held || err != nil {
		t.Fatalf("the wrong bytes are stored (%v)", err)
	}
	if _, err := r.ResolveTag(ctx, "src/bad", "v1"); err == nil {
		t.Fatal("the image was tagged without its layer")
	}
}

func TestAnImportRequestThatCannotBeRunIsRefusedWithItsReason(t *testing.T) {
	_, im := startImporter(t)
	for _, tc := range []struct {
		req  transfer.Request
		want *ocierr.Code
	}{
		{transfer.Request{Source: "not a reference!"}, ocierr.RequestInvalid},
		{transfer.Request{Source: ""}, ocierr.RequestInvalid},
		{transfer.Request{Source: "registry.example/app:v1", Image: "app@sha256:" + strings.Repeat("a", 64)}, ocierr.RequestInvalid},
		{transfer.Request{Source: "registry.example/app:v1", Image: "Upper/App"}, ocierr.NameInvalid},
		{transfer.Request{Source: "registry.example/app:v1", Image: "app:" + strings.Repeat("t", 200)}, ocierr.RequestInvalid},
		{transfer.Request{Source: "registry.example/app:v1", Image: "app:-bad"}, ocierr.RequestInvalid},
	} {
		job, err := im.Start(t.Context(), tc.req)
		if !tc.want.Is(err) {
			t.Errorf("Start(%+v) = %+v, %v; want %s", tc.req, job, err, tc.want.Name)
		}
	}
}
