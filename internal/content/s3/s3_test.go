package s3_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
	"github.com/georeg/georeg/internal/content/contenttest"
	contents3 "github.com/georeg/georeg/internal/content/s3"
	"github.com/georeg/georeg/internal/storetest"
)

// open opens a backend on a fresh bucket of the test S3 server, with the
// smallest part size S3 takes, so the suite's blobs span several parts.
func open(t *testing.T) content.Backend {
	bucket := storetest.S3Bucket(t)
	b, err := contents3.Open(t.Context(), contents3.Config{Endpoint: bucket.Endpoint, Bucket: bucket.Bucket,
		AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey, PartSize: 5 << 20, Prefix: "region/"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reopen opens another backend on b's bucket: another node's.
func reopen(t *testing.T, b content.Backend) content.Backend {
	again, err := contents3.Open(t.Context(), b.(*contents3.Backend).Config())
	if err != nil {
		t.Fatal(err)
	}
	return again
}

func TestBackend(t *testing.T) { contenttest.Run(t, open, reopen) }

// TestAPresignedURLServesTheBlob: RedirectURL's URL serves the object's
// bytes to a client without credentials, and only until it expires.
func TestAPresignedURLServesTheBlob(t *testing.T) {
	b := open(t)
	s := content.New(b)
	data := []byte("served by the object store")
	d := digest.FromBytes(data)
	if _, err := s.Put(t.Context(), "p1", d, -1, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	u, err := b.(content.Redirector).RedirectURL(t.Context(), content.BlobKey(d), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, data) {
		t.Fatalf("GET the presigned URL: %d %q", resp.StatusCode, got)
	}
	if resp, err := http.Get(strings.Replace(u, "X-Amz-Signature=", "X-Amz-Signature=0", 1)); err != nil || resp.StatusCode == 200 {
		t.Fatalf("a tampered URL: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestAStaleMultipartUploadIsSwept: a multipart upload begun straight at
// a blob's key by a writer that died is aborted by Sweep once older than
// the cutoff, and left alone before.
func TestAStaleMultipartUploadIsSwept(t *testing.T) {
	b := open(t)
	data := bytes.Repeat([]byte("abandoned "), 1<<20) // two parts
	d := digest.FromBytes(data)
	w, err := b.Writer(t.Context(), "uploads/dead/data", content.WriterOptions{Target: content.BlobKey(d)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	// The writer's process dies here: no Commit, no Cancel.
	sw := b.(content.Sweeper)
	if err := sw.Sweep(t.Context(), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context(), content.BlobKey(d)); err != nil {
		t.Fatalf("a young multipart upload was swept: %v", err)
	}
	if n, err := b.Stat(t.Context(), content.BlobKey(d)); err != nil || n != int64(len(data)) {
		t.Fatalf("a young multipart upload was swept: %d %v", n, err)
	}
	w, _ = b.Writer(t.Context(), "uploads/dead2/data", content.WriterOptions{Target: "blobs/sha256/00/" + strings.Repeat("0", 64)})
	_, _ = w.Write(data)
	if err := sw.Sweep(t.Context(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context(), "blobs/sha256/00/"+strings.Repeat("0", 64)); err == nil {
		t.Fatal("a swept multipart upload still completed")
	}
}
