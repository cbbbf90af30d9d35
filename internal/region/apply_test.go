package region_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// trickle hands out a few bytes per read, so concurrent copies interleave.
type trickle struct{ r io.Reader }

func (t trickle) Read(p []byte) (int, error) { return t.r.Read(p[:min(len(p), 997)]) }
func (trickle) Close() error                 { return nil }

// TestInvariant1ConcurrentFetchesOfOneBlobStoreTheRightBytes: the feed
// follower and a read-through fetching the same blob at once must not
// interleave in one staging file.
func TestInvariant1ConcurrentFetchesOfOneBlobStoreTheRightBytes(t *testing.T) {
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	data := make([]byte, 3<<20)
	_, _ = rand.Read(data)
	d := digest.FromBytes(data)
	openAt := func(_ context.Context, offset int64) (io.ReadCloser, error) {
		return trickle{bytes.NewReader(data[offset:])}, nil
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := r.FetchBlob(t.Context(), "repl.peer."+d.Encoded(), d, int64(len(data)), openAt); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := r.ApplyBlob(t.Context(), "", 0, "app", d); err != nil {
		t.Fatal(err)
	}
	rc, _, err := r.OpenBlob(t.Context(), "app", d, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if digest.FromBytes(got) != d {
		t.Fatal("the stored blob does not match its digest")
	}
}
