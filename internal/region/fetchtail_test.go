package region_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// gated returns head's bytes, then waits for gate and returns tail's, or
// fails when gate carries an error.
type gated struct {
	head, tail io.Reader
	gate       chan error
	opened     bool
}

func (g *gated) Read(p []byte) (int, error) {
	if n, err := g.head.Read(p); n > 0 || err != io.EOF {
		return n, err
	}
	if !g.opened {
		if err := <-g.gate; err != nil {
			return 0, err
		}
		g.opened = true
	}
	return g.tail.Read(p)
}
func (g *gated) Close() error { return nil }

// syncBuffer is a bytes.Buffer safe to read while written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// TestACallArrivingSecondStreamsTheFetchAsItLands: the feed follower is
// fetching an 8 MiB blob, half of it arrived, the rest not yet; a relay
// request for the same blob arrives. It gets the arrived half at once
// (not after the whole fetch, which would outlast its peer's header
// wait), never the last byte before the fetch verified, then the rest;
// the peer is asked once. When the fetch fails midway instead, the second
// call says it streamed and fails: its response is cut, never complete.
//
// On S3 (GEOREG_TEST_REGION_STORES=shared) staging bytes cannot be read
// back, so the second call does not follow: it gets nothing while the
// fetch runs, then (streamed false) the caller serves the blob from the
// store, or it fails with the fetch without having written a byte.
func TestACallArrivingSecondStreamsTheFetchAsItLands(t *testing.T) {
	follows := os.Getenv("GEOREG_TEST_REGION_STORES") != "shared"
	for _, fail := range []bool{false, true} {
		r := open(t, t.TempDir(), 0)
		data := make([]byte, 8<<20)
		_, _ = rand.Read(data)
		d := digest.FromBytes(data)
		id := "repl." + d.Encoded()
		half := len(data) / 2
		gate := make(chan error, 1)
		opens, asked := 0, make(chan struct{})
		openAt := func(_ context.Context, offset int64) (io.ReadCloser, error) {
			if opens++; opens == 1 {
				close(asked)
			}
			return &gated{head: bytes.NewReader(data[offset:half]), tail: bytes.NewReader(data[half:]), gate: gate}, nil
		}
		led := make(chan error, 1)
		go func() {
			_, err := r.FetchBlob(t.Context(), id, d, int64(len(data)), openAt, nil)
			led <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		select { // the fetch is running: the peer was asked
		case <-asked:
		case <-time.After(10 * time.Second):
			t.Fatal("the fetch did not start")
		}
		var w syncBuffer
		second := make(chan error, 1)
		var streamed bool
		go func() {
			var err error
			streamed, err = r.FetchBlob(t.Context(), id, d, int64(len(data)), func(context.Context, int64) (io.ReadCloser, error) {
				return nil, errors.New("the second call asked the peer: it should follow the running fetch")
			}, &w)
			second <- err
		}()
		if follows {
			for w.Len() < half/2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if w.Len() < half/2 {
				t.Fatalf("fail=%v: the second call got %d bytes while half the blob had landed", fail, w.Len())
			}
		} else {
			time.Sleep(200 * time.Millisecond) // time for bytes that should not come
			if w.Len() != 0 {
				t.Fatalf("fail=%v: on S3 the second call got %d bytes before the fetch ended", fail, w.Len())
			}
		}
		if fail {
			gate <- errors.New("the link broke")
		} else {
			gate <- nil
		}
		lerr, serr := <-led, <-second
		switch {
		case opens != 1:
			t.Fatalf("fail=%v: the peer was asked %d times", fail, opens)
		case !follows && (lerr == nil) == fail:
			t.Fatalf("fail=%v: the leading fetch returned %v", fail, lerr)
		case !follows && (streamed || w.Len() != 0 || (serr == nil) == fail):
			t.Fatalf("fail=%v on S3: second %v, streamed %v with %d bytes", fail, serr, streamed, w.Len())
		case !follows:
		case fail && (lerr == nil || serr == nil || !streamed || w.Len() >= len(data)):
			t.Fatalf("a fetch that broke: leader %v, second %v streamed %v with %d of %d bytes", lerr, serr, streamed, w.Len(), len(data))
		case !fail && (lerr != nil || serr != nil || !streamed || !bytes.Equal(w.Bytes(), data)):
			t.Fatalf("leader %v, second %v, streamed %v, %d of %d bytes (equal %v)", lerr, serr, streamed, w.Len(), len(data), bytes.Equal(w.Bytes(), data))
		}
		r.Close()
	}
}
