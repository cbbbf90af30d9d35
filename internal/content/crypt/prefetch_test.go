package crypt

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// blockingReader returns its bytes, then blocks until closed.
type blockingReader struct {
	data   *bytes.Reader
	closed chan struct{}
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if b.data.Len() > 0 {
		return b.data.Read(p)
	}
	<-b.closed
	return 0, errors.New("closed")
}

func (b *blockingReader) Close() error { close(b.closed); return nil }

// TestAPrefetcherReadsAheadInOrderAndClosesWhileItsSourceHangs: what is
// read through the prefetcher is its source's bytes in order, to the
// end; and Close returns at once though the goroutine reading ahead is
// blocked in a source that stalled (a store's read that hangs must not
// hold the handler that gave up on it).
func TestAPrefetcherReadsAheadInOrderAndClosesWhileItsSourceHangs(t *testing.T) {
	data := make([]byte, 3*prefetchChunk+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	p := prefetch(io.NopCloser(bytes.NewReader(data)))
	got, err := io.ReadAll(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	b := &blockingReader{data: bytes.NewReader(data[:1000]), closed: make(chan struct{})}
	p = prefetch(b)
	time.Sleep(50 * time.Millisecond) // the goroutine is blocked in the source by now
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a source that hangs")
	}
}
