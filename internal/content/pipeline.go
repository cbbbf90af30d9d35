package content

import (
	"context"
	"encoding"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"
)

// pipelineBufferSize is each of the two buffers of a pipelined upload.
// Every buffer costs a hand-off between goroutines, and each hand-off
// wakes and parks threads: with 1 MiB buffers a 1 GiB upload switched
// context 26 times per MiB and spent about a fifth more CPU than through
// one buffer; with 3 or 4 MiB no more than through one buffer
// (docs/performance.md, "Uploads write in the background"). Since a
// registry process has a spare P (cmd/georeg, procs.go), 2.5 MiB costs
// no more CPU than 3 (2 MiB: 7 % more) and keeps the 1 GiB upload's peak
// RSS a MiB under its 40 MiB, which 3 MiB reached ("A spare P").
const pipelineBufferSize = 5 << 19 // 2.5 MiB, a multiple of the 4 KiB O_DIRECT alignment

var pipelineBuffers = sync.Pool{New: func() any { b := make([]byte, pipelineBufferSize); return &b }}

// pipelineSlots bounds the uploads that pipeline to the node's cores:
// overlapping a write with the next read gains only while a core would
// otherwise wait for the disk, and a node with more uploads than cores
// already keeps them busy. It also bounds the memory of the larger
// buffers to 5 MiB per core. Read at package init, before a registry
// process takes its spare P (cmd/georeg, procs.go): the cores, not the Ps.
var pipelineSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))

// takePipelineSlot says whether an append pipelines, and if so has
// taken a slot, which the caller gives back: not when the node already
// streams an upload per core (one buffer each keeps the cores busy).
func takePipelineSlot() bool {
	select {
	case pipelineSlots <- struct{}{}:
		return true
	default:
		return false
	}
}

// appendPipelined copies src to w and hashes it into h through two
// buffers: while one buffer's bytes are written to w (in the background),
// the next is read from src and hashed. A serial copy leaves the CPU idle
// while the disk takes each buffer (an O_DIRECT write returns only once
// the device has it) and the disk idle while the socket is read and the
// bytes hashed; overlapping the two is what made encrypted uploads, whose
// writes already went in the background, faster than plaintext ones
// (docs/performance.md).
//
// When a write fails part way (a disk that fills mid-buffer), h has
// hashed exactly the bytes w took and the count returned is theirs: the
// session holds, counts and has hashed the same bytes, and can go on
// from them. The hash's state before each buffer is kept
// until that buffer is written; a failed write rolls the hash back to it
// and on by the bytes written. The bytes of a buffer read after the one
// that failed were never written and are not counted: the client resumes
// from the size the session reports. A src error (a client gone) comes
// after every byte read before it is written. One write at most is in
// flight, and none when it returns: w is the caller's again.
func appendPipelined(ctx context.Context, w Writer, h hash.Hash, src io.Reader) (int64, error) {
	if bw, ok := w.(BackgroundWriter); ok {
		bw.WriteInline(true)
		defer bw.WriteInline(false)
	}
	var (
		total  int64
		flight *pipelineWrite // the write in the background, or nil
		spare  *[]byte        // a written buffer, to fill next
	)
	defer func() {
		if spare != nil {
			pipelineBuffers.Put(spare)
		}
	}()
	// settle waits for the write in flight and counts it; on a failure it
	// rolls h back to the bytes w took.
	settle := func() error {
		if flight == nil {
			return nil
		}
		r := <-flight.done
		total += int64(r.n)
		buf, state := (*flight.buf)[:flight.n], flight.state
		if r.err == nil && r.n < len(buf) {
			r.err = io.ErrShortWrite
		}
		if spare == nil {
			spare = flight.buf
		} else {
			defer pipelineBuffers.Put(flight.buf)
		}
		flight = nil
		if r.err == nil {
			return nil
		}
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
			return fmt.Errorf("%w: %w (and the hash could not be rolled back: %v)", ErrWrite, r.err, err)
		}
		h.Write(buf[:r.n])
		return fmt.Errorf("%w: %w", ErrWrite, r.err)
	}
	for {
		if err := ctx.Err(); err != nil {
			if serr := settle(); serr != nil {
				return total, serr
			}
			return total, err
		}
		bp := spare
		spare = nil
		if bp == nil {
			bp = pipelineBuffers.Get().(*[]byte)
		}
		n, rerr := fill(src, *bp)
		if n == 0 {
			pipelineBuffers.Put(bp)
			if err := settle(); err != nil {
				return total, err
			}
			if rerr == io.EOF {
				return total, nil
			}
			return total, rerr
		}
		state, err := h.(encoding.BinaryAppender).AppendBinary(nil)
		if err != nil {
			pipelineBuffers.Put(bp)
			_ = settle()
			return total, err
		}
		h.Write((*bp)[:n])
		if err := settle(); err != nil {
			pipelineBuffers.Put(bp) // read and hashed, never written: not counted
			return total, err
		}
		if rerr != nil {
			// The last buffer: written here, no goroutine for a small blob.
			flight = &pipelineWrite{buf: bp, n: n, state: state, done: make(chan pipelineResult, 1)}
			k, werr := w.Write((*bp)[:n])
			flight.done <- pipelineResult{n: k, err: werr}
			if err := settle(); err != nil {
				return total, err
			}
			if rerr == io.EOF {
				return total, nil
			}
			return total, rerr
		}
		flight = &pipelineWrite{buf: bp, n: n, state: state, done: make(chan pipelineResult, 1)}
		go func(p *pipelineWrite) {
			k, werr := w.Write((*p.buf)[:p.n])
			p.done <- pipelineResult{n: k, err: werr}
		}(flight)
	}
}

// pipelineWrite is a buffer being written, with the hash's state from
// before it.
type pipelineWrite struct {
	buf   *[]byte
	n     int
	state []byte
	done  chan pipelineResult
}

// pipelineResult is a write's outcome.
type pipelineResult struct {
	n   int
	err error
}
