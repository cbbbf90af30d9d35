package replicate

import (
	"bytes"
	"testing"
)

// TestAStreamResumedFromAnotherPeerSendsEachByteOnce: a fetch that broke
// after k bytes reached the client, then one from another peer that
// starts over (or from what was kept: it writes from offset 0 again),
// give the client the blob once, in order, whatever the chunking.
func TestAStreamResumedFromAnotherPeerSendsEachByteOnce(t *testing.T) {
	blob := bytes.Repeat([]byte("0123456789abcdef"), 1000)
	for _, c := range []struct{ broke, chunk int }{{0, 7}, {1, 1}, {5000, 4096}, {4096, 4096}, {len(blob) - 1, 1000}, {len(blob), 333}} {
		var got bytes.Buffer
		var sent int64
		first := &resumeWriter{w: &got, sent: &sent}
		for i := 0; i < c.broke; i += c.chunk {
			if _, err := first.Write(blob[i:min(i+c.chunk, c.broke)]); err != nil {
				t.Fatal(err)
			}
		}
		second := &resumeWriter{w: &got, sent: &sent}
		for i := 0; i < len(blob); i += c.chunk {
			n, err := second.Write(blob[i:min(i+c.chunk, len(blob))])
			if err != nil || n != min(c.chunk, len(blob)-i) {
				t.Fatalf("broke at %d: wrote %d, %v", c.broke, n, err)
			}
		}
		if !bytes.Equal(got.Bytes(), blob) || sent != int64(len(blob)) {
			t.Fatalf("broke at %d, chunks of %d: the client got %d bytes (%d counted), not the blob", c.broke, c.chunk, got.Len(), sent)
		}
	}
}
