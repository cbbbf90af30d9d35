package region_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
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
			if _, err := r.FetchBlob(t.Context(), "repl.peer."+d.Encoded(), d, int64(len(data)), openAt, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := r.AdoptBlob(t.Context(), "app", d, nil); err != nil {
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

// failAfter returns n bytes of r, then an error, as a broken transfer.
type failAfter struct {
	r io.Reader
	n int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	k, err := f.r.Read(p[:min(len(p), f.n)])
	f.n -= k
	return k, err
}
func (f *failAfter) Close() error { return nil }

// TestAFetchResumesWhereItBrokeAndStreamsEveryByte: a transfer that breaks
// keeps what arrived; the next fetch asks only for the rest (Range). A
// client streaming a fetch still receives every byte, the kept ones first
// when the store can read them back (a filesystem), else by fetching
// again from the start (S3 cannot read a multipart upload before it is
// complete).
func TestAFetchResumesWhereItBrokeAndStreamsEveryByte(t *testing.T) {
	data := make([]byte, 2<<20)
	_, _ = rand.Read(data)
	d := digest.FromBytes(data)
	id := "repl.peer." + d.Encoded()
	var offsets []int64
	broken := func(_ context.Context, offset int64) (io.ReadCloser, error) {
		offsets = append(offsets, offset)
		return &failAfter{r: bytes.NewReader(data[offset:]), n: 700_000}, nil
	}
	whole := func(_ context.Context, offset int64) (io.ReadCloser, error) {
		offsets = append(offsets, offset)
		return io.NopCloser(bytes.NewReader(data[offset:])), nil
	}
	t.Run("without a client", func(t *testing.T) {
		r := open(t, t.TempDir(), 0)
		defer r.Close()
		offsets = nil
		if _, err := r.FetchBlob(t.Context(), id, d, int64(len(data)), broken, nil); err == nil {
			t.Fatal("a broken transfer succeeded")
		}
		if _, err := r.FetchBlob(t.Context(), id, d, int64(len(data)), whole, nil); err != nil {
			t.Fatal(err)
		}
		if len(offsets) != 2 || offsets[0] != 0 || offsets[1] != 700_000 {
			t.Fatalf("asked for offsets %v, want [0 700000]", offsets)
		}
	})
	t.Run("broken after the last byte", func(t *testing.T) {
		// Every byte arrived, then the connection broke: the next call
		// commits what it kept without asking the peer again.
		r := open(t, t.TempDir(), 0)
		defer r.Close()
		offsets = nil
		whole := func(_ context.Context, offset int64) (io.ReadCloser, error) {
			offsets = append(offsets, offset)
			return &failAfter{r: bytes.NewReader(data[offset:]), n: len(data)}, nil
		}
		if streamed, err := r.FetchBlob(t.Context(), id, d, int64(len(data)), whole, nil); err == nil || streamed {
			t.Fatalf("a transfer that broke after its last byte: streamed %v, %v; want an error, nothing streamed", streamed, err)
		}
		if _, err := r.FetchBlob(t.Context(), id, d, int64(len(data)), whole, nil); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(offsets, []int64{0}) {
			t.Fatalf("asked for offsets %v, want [0]: the kept bytes were the whole blob", offsets)
		}
		if _, ok, err := r.HasContent(t.Context(), d); !ok || err != nil {
			t.Fatalf("blob not stored: %t %v", ok, err)
		}
	})
	t.Run("streamed to a client", func(t *testing.T) {
		r := open(t, t.TempDir(), 0)
		defer r.Close()
		offsets = nil
		if _, err := r.FetchBlob(t.Context(), id, d, int64(len(data)), broken, nil); err == nil {
			t.Fatal("a broken transfer succeeded")
		}
		var client bytes.Buffer
		streamed, err := r.FetchBlob(t.Context(), id, d, int64(len(data)), whole, &client)
		if err != nil || !streamed {
			t.Fatalf("resume: streamed=%v %v", streamed, err)
		}
		if want := []int64{0, 700_000}; r.Shared() {
			want[1] = 0
			if !slices.Equal(offsets, want) {
				t.Fatalf("asked for offsets %v, want %v (S3 fetches again from the start)", offsets, want)
			}
		} else if !slices.Equal(offsets, want) {
			t.Fatalf("asked for offsets %v, want %v", offsets, want)
		}
		if !bytes.Equal(client.Bytes(), data) {
			t.Fatalf("the client got %d bytes that differ from the blob", client.Len())
		}
	})
}

// TestAManifestPushedWithATagIsMarkedWhenItsTagApplies: a region that
// applied the origin's feed counts as holding a manifest (the presence
// that drives image status and replicated-everywhere) only through the
// record that makes it pullable by the tag it was pushed with; a manifest
// pushed by digest through its own record. No record is written for it.
func TestAManifestPushedWithATagIsMarkedWhenItsTagApplies(t *testing.T) {
	ctx := t.Context()
	r := open(t, t.TempDir(), 0)
	defer r.Close()
	// westeurope publishes that it applied eastus's feed through seq.
	westeuropeAt := func(t *testing.T, repo string, d digest.Digest, seq int64) bool {
		t.Helper()
		if err := r.RecordPeerApplied(ctx, "westeurope", map[string]int64{"eastus": seq}, 0); err != nil {
			t.Fatal(err)
		}
		p, err := r.Presence(ctx, repo, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p["eastus"]; !ok {
			t.Fatalf("the origin is not present: %v", p)
		}
		_, ok := p["westeurope"]
		return ok
	}
	v := hlc.Version{Time: 1 << 20, Region: "eastus"}
	tagged := manifestFor(t, r, "app", "tagged")
	d := digest.FromBytes(tagged)
	if err := r.ApplyManifest(ctx, "eastus", 1, "app", d, "application/vnd.oci.image.manifest.v1+json", tagged, v, "v1"); err != nil {
		t.Fatal(err)
	}
	if westeuropeAt(t, "app", d, 1) {
		t.Fatal("a region through the manifest record counts as holding it before its tag record")
	}
	if err := r.ApplyTag(ctx, "eastus", 2, "app", "v1", d, v, true); err != nil {
		t.Fatal(err)
	}
	if westeuropeAt(t, "app", d, 1) {
		t.Fatal("a region short of the tag record counts as holding it")
	}
	if !westeuropeAt(t, "app", d, 2) {
		t.Fatal("a region through the tag record does not count as holding it")
	}
	byDigest := manifestFor(t, r, "app", "by digest")
	d2 := digest.FromBytes(byDigest)
	if err := r.ApplyManifest(ctx, "eastus", 3, "app", d2, "application/vnd.oci.image.manifest.v1+json", byDigest, v, ""); err != nil {
		t.Fatal(err)
	}
	if !westeuropeAt(t, "app", d2, 3) {
		t.Fatal("a manifest pushed by digest: a region through its record does not count as holding it")
	}
	// A repair (anti-entropy's apply, which names no peer) records this
	// region's presence, and no row for a region without a name.
	if err := r.ApplyTag(ctx, "", 0, "app", "v2", d2, v, true); err != nil {
		t.Fatal(err)
	}
	if p, err := r.Presence(ctx, "app", d2); err != nil {
		t.Fatal(err)
	} else if _, ok := p[""]; ok {
		t.Fatalf("a repair recorded presence for a region named \"\": %v", p)
	}
	for _, d := range []digest.Digest{d, d2} {
		if kinds := feedKinds(t, r, d, ""); len(kinds) > 0 {
			t.Fatalf("applying a peer's records wrote %v to this region's feed; want nothing", kinds)
		}
	}
}
