package region

import (
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content"
)

// TestBlobKeyDigest: only a blob's key names a digest to verify its
// plaintext against before it is encrypted in place.
func TestBlobKeyDigest(t *testing.T) {
	d := digest.FromString("x")
	if got, ok := blobKeyDigest(content.BlobKey(d)); !ok || got != d {
		t.Fatalf("%s: %s %v", content.BlobKey(d), got, ok)
	}
	for _, key := range []string{"uploads/x/data", "blobs/sha256/zz/" + d.Encoded(), "blobs/sha256/" + d.Encoded()[:2] + "/abc", "other/" + d.Encoded()} {
		if _, ok := blobKeyDigest(key); ok {
			t.Errorf("%s named a digest", key)
		}
	}
}
