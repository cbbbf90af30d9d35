package content

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// memWriter is a Writer in memory that takes at most room bytes, then
// fails every write with ENOSPC part way, as a disk that fills does.
type memWriter struct {
	bytes.Buffer
	room int
}

func (w *memWriter) Write(p []byte) (int, error) {
	k := min(len(p), w.room)
	w.room -= k
	w.Buffer.Write(p[:k])
	if k < len(p) {
		return k, syscall.ENOSPC
	}
	return k, nil
}
func (w *memWriter) Size() int64                                { return int64(w.Len()) }
func (w *memWriter) Checkpoint(context.Context) ([]byte, error) { return nil, nil }
func (w *memWriter) Commit(context.Context, string) error       { return nil }
func (w *memWriter) Cancel(context.Context) error               { return nil }

// cutReader returns data up to cut, then fails: a client gone mid-body.
type cutReader struct {
	r   io.Reader
	err error
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		return n, c.err
	}
	return n, err
}

// TestAnAppendHashesExactlyWhatItStored holds both ways an upload
// streams (pipelined while a core is free, through one buffer when the
// node is busy) to the same promise: whatever fails, the session holds,
// counts and has hashed the same bytes, so it can go on from them.
func TestAnAppendHashesExactlyWhatItStored(t *testing.T) {
	data := make([]byte, 3*pipelineBufferSize+12345)
	_, _ = rand.Read(data)
	gone := errors.New("client gone")
	for _, pipelined := range []bool{true, false} {
		for _, tc := range []struct {
			name  string
			room  int  // bytes the disk takes
			body  int  // bytes the client sends before cutReader's error
			want  int  // bytes stored and counted
			write bool // the disk fills: ENOSPC as ErrWrite
			cut   bool // the body ends in an error, not EOF
		}{
			{"whole", len(data), len(data), len(data), false, false},
			{"empty", len(data), 0, 0, false, false},
			{"small", len(data), 100, 100, false, false},
			{"the disk fills in the first buffer", 777, len(data), 777, true, false},
			{"the disk fills in the second buffer", pipelineBufferSize + 4097, len(data), pipelineBufferSize + 4097, true, false},
			{"the disk fills at a buffer's end", 2 * pipelineBufferSize, len(data), 2 * pipelineBufferSize, true, false},
			{"the disk fills in the last buffer", len(data) - 5, len(data), len(data) - 5, true, false},
			{"the client goes mid-buffer", len(data), 2*pipelineBufferSize + 99, 2*pipelineBufferSize + 99, false, true},
			{"the client goes and the disk fills", pipelineBufferSize + 1, 2*pipelineBufferSize + 99, pipelineBufferSize + 1, true, true},
		} {
			t.Run(fmt.Sprintf("%s/pipelined=%t", tc.name, pipelined), func(t *testing.T) {
				if !pipelined {
					for range cap(pipelineSlots) {
						pipelineSlots <- struct{}{}
					}
					defer func() {
						for range cap(pipelineSlots) {
							<-pipelineSlots
						}
					}()
				}
				w := &memWriter{room: tc.room}
				u := &Upload{id: "t", hash: sha256.New(), w: w}
				var src io.Reader = bytes.NewReader(data[:tc.body])
				if tc.cut {
					src = &cutReader{r: src, err: gone}
				}
				n, err := u.AppendAhead(t.Context(), src)
				switch {
				case tc.write && (!errors.Is(err, ErrWrite) || !errors.Is(err, syscall.ENOSPC)):
					t.Fatalf("append: %v, want ENOSPC as ErrWrite", err)
				case !tc.write && tc.cut && !errors.Is(err, gone):
					t.Fatalf("append: %v, want the client's error", err)
				case !tc.write && !tc.cut && err != nil:
					t.Fatalf("append: %v", err)
				}
				if n != int64(tc.want) || u.Size() != n || w.Len() != tc.want {
					t.Fatalf("append returned %d, session counts %d, store holds %d; want %d", n, u.Size(), w.Len(), tc.want)
				}
				if !bytes.Equal(w.Bytes(), data[:tc.want]) {
					t.Fatal("the store holds other bytes than those sent")
				}
				if got, want := u.hash.Sum(nil), sha256.Sum256(data[:tc.want]); !bytes.Equal(got, want[:]) {
					t.Fatal("the session's hash is not that of the bytes stored")
				}
			})
		}
	}
}

// TestAnAppendEndsWithNoWriteInFlight: the writer is the caller's again
// when Append returns, whichever way it ends (Checkpoint and Commit use
// it next).
func TestAnAppendEndsWithNoWriteInFlight(t *testing.T) {
	data := make([]byte, 2*pipelineBufferSize+1)
	ctx, cancel := context.WithCancel(t.Context())
	w := &slowWriter{ctx: ctx, cancel: cancel}
	u := &Upload{id: "t", hash: sha256.New(), w: w}
	n, err := u.AppendAhead(ctx, bytes.NewReader(data))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("append: %v, want context.Canceled", err)
	}
	if w.busy.Load() {
		t.Fatal("a write was still in flight after Append returned")
	}
	if n != int64(w.n) || u.Size() != n {
		t.Fatalf("append returned %d, session counts %d, store took %d", n, u.Size(), w.n)
	}
}

// slowWriter cancels its context on the first write and takes its time
// with every write, marking itself busy meanwhile.
type slowWriter struct {
	memWriter
	ctx    context.Context
	cancel context.CancelFunc
	busy   atomic.Bool
	n      int
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.busy.Store(true)
	defer w.busy.Store(false)
	w.cancel()
	time.Sleep(20 * time.Millisecond)
	w.n += len(p)
	return len(p), nil
}

// lockedWriter is a memWriter safe to read while Append writes to it.
type lockedWriter struct {
	memWriter
	mu sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.memWriter.Write(p)
}

func (w *lockedWriter) held() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Len()
}

// TestAppendHandsOnEachBufferAsItFills: a fetch others stream while it
// lands (Append, not AppendAhead) has each 1 MiB in the store while the
// source still holds the rest, even with a pipeline slot free (a 3 MiB
// pipelined buffer held a cold pull's first half back until the whole
// layer had arrived).
func TestAppendHandsOnEachBufferAsItFills(t *testing.T) {
	w := &lockedWriter{memWriter: memWriter{room: 1 << 30}}
	u := &Upload{id: "t", hash: sha256.New(), w: w}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { _, err := u.Append(t.Context(), pr); done <- err }()
	half := make([]byte, BufferSize+BufferSize/2)
	if _, err := pw.Write(half); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for w.held() < BufferSize && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	held := w.held()
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if held < BufferSize {
		t.Fatalf("the store held %d bytes while the source held the rest; want the first %d", held, BufferSize)
	}
}
