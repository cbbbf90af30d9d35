package crypt

import (
	"io"
	"sync"
)

// A committed object is decrypted ahead of its reader, by one goroutine,
// into a few chunks: a blob GET then decrypts the next chunk while the
// handler writes the last one to the client's socket (on two cores, the
// decryption no longer waits for the socket, nor the socket for it).
const (
	prefetchChunk  = 4 * payloadSize // 256 KiB: four packages, decrypted straight into it
	prefetchChunks = 3
)

// prefetcher reads r ahead into chunks.
type prefetcher struct {
	r      io.ReadCloser
	full   chan []byte // chunks read, in order
	free   chan []byte // chunks to read into
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	chunk  []byte // the chunk being returned, whole
	cur    []byte // what of it is left
	err    error  // r's error, after the last chunk
	errSet chan struct{}
	made   int // chunks taken from the pool (by run)
}

// chunkPool keeps chunks between objects: a small object (a manifest)
// takes one chunk, a blob three, and neither allocates in steady state.
var chunkPool = sync.Pool{New: func() any { return make([]byte, prefetchChunk) }}

func prefetch(r io.ReadCloser) *prefetcher {
	p := &prefetcher{r: r, full: make(chan []byte, prefetchChunks), free: make(chan []byte, prefetchChunks),
		done: make(chan struct{}), errSet: make(chan struct{})}
	p.wg.Add(1)
	go p.run()
	return p
}

// run fills free chunks from r until r ends or the reader is closed.
func (p *prefetcher) run() {
	defer p.wg.Done()
	defer close(p.full)
	for {
		var buf []byte
		if p.made < prefetchChunks && len(p.free) == 0 {
			buf = chunkPool.Get().([]byte)
			p.made++
		} else {
			select {
			case buf = <-p.free:
			case <-p.done:
				return
			}
		}
		n, err := io.ReadFull(p.r, buf[:cap(buf)])
		if n > 0 {
			select {
			case p.full <- buf[:n]:
			case <-p.done:
				chunkPool.Put(buf[:cap(buf)])
				return
			}
		} else {
			p.free <- buf
		}
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			p.err = err
			close(p.errSet)
			return
		}
	}
}

func (p *prefetcher) Read(b []byte) (int, error) {
	if len(p.cur) == 0 {
		if p.chunk != nil {
			p.free <- p.chunk[:cap(p.chunk)]
			p.chunk = nil
		}
		buf, ok := <-p.full
		if !ok {
			select {
			case <-p.errSet:
				return 0, p.err
			default:
				return 0, io.ErrClosedPipe
			}
		}
		p.chunk, p.cur = buf, buf
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// Close stops the goroutine, closes r (which ends a read the goroutine
// may be blocked in: a stalled store must not hold Close), waits for the
// goroutine, and returns the chunks to the pool.
func (p *prefetcher) Close() error {
	first := false
	var err error
	p.once.Do(func() { close(p.done); first = true; err = p.r.Close() })
	p.wg.Wait()
	if first {
		if p.chunk != nil {
			chunkPool.Put(p.chunk[:cap(p.chunk)])
			p.chunk, p.cur = nil, nil
		}
		for buf := range p.full {
			chunkPool.Put(buf[:cap(buf)])
		}
		for len(p.free) > 0 {
			buf := <-p.free
			chunkPool.Put(buf[:cap(buf)])
		}
	}
	return err
}
