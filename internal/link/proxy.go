package link

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// chunkSize and inFlight bound what one direction of a connection holds:
// inFlight chunks of chunkSize, 16 MiB, above the bandwidth-delay product
// of the default links (100 MB/s x 110 ms = 11 MB), so the cap is the
// bandwidth, not the buffer.
const (
	chunkSize = 64 << 10
	inFlight  = 256
)

// Proxy listens on loopback and forwards every connection to a target
// through a shaped link, with the fault set on it. It is safe for
// concurrent use.
type Proxy struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup
	up     pacer // client -> target, shared by every connection
	down   pacer // target -> client

	mu      sync.Mutex
	shape   Shape
	fault   Fault
	changed chan struct{} // closed and replaced when the fault changes
	conns   map[net.Conn]bool

	delivered [2]atomic.Int64 // bytes written to the target, to the client
}

// pacer schedules one direction of a link: each chunk occupies it for
// size/bandwidth, whichever connection sent it.
type pacer struct {
	mu   sync.Mutex
	free time.Time // when the link can take the next byte
}

// slot returns when a chunk of n bytes that may leave at due does leave,
// and books the link for it.
func (p *pacer) slot(due time.Time, n int, bandwidth int64) time.Time {
	if bandwidth <= 0 {
		return due
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free.After(due) {
		due = p.free
	}
	p.free = due.Add(time.Duration(int64(n) * int64(time.Second) / bandwidth))
	return due
}

// Start starts a proxy to target (host:port) shaped as s; it stops when
// ctx ends, and Wait returns when its connections have closed.
func Start(ctx context.Context, target string, s Shape) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{l: l, target: target, shape: s, changed: make(chan struct{}), conns: map[net.Conn]bool{}}
	p.wg.Go(func() { p.accept(ctx) })
	go func() {
		<-ctx.Done()
		l.Close()
		p.closeAll(false)
	}()
	return p, nil
}

// Addr is where the proxy listens.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Target is where the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Wait returns when every connection has ended.
func (p *Proxy) Wait() { p.wg.Wait() }

// Set puts fault f on the link, at once for every connection.
func (p *Proxy) Set(f Fault) {
	p.mu.Lock()
	p.fault = f
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	switch f {
	case Reset:
		p.closeAll(true)
	case Partition:
		p.closeAll(false)
	}
}

// Fault returns the fault on the link now.
func (p *Proxy) Fault() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault
}

// Throttle sets the bandwidth of each direction (bytes per second; 0:
// unlimited), from the next chunk on.
func (p *Proxy) Throttle(bandwidth int64) {
	p.mu.Lock()
	p.shape.Bandwidth = bandwidth
	p.mu.Unlock()
}

// Shape returns the link's shape now.
func (p *Proxy) Shape() Shape {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shape
}

// Delivered returns the bytes the link has delivered to the target and to
// the client so far.
func (p *Proxy) Delivered() (toTarget, toClient int64) {
	return p.delivered[0].Load(), p.delivered[1].Load()
}

func (p *Proxy) state() (Fault, Shape, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault, p.shape, p.changed
}

// closeAll closes every connection, resetting it (RST) when reset is set.
func (p *Proxy) closeAll(reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		cut(c, reset)
	}
}

// cut closes c, with an RST when reset is set.
func cut(c net.Conn, reset bool) {
	if tc, ok := c.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// track records open connections, so a fault or the end reaches them.
func (p *Proxy) track(c net.Conn, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if open {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) accept(ctx context.Context) {
	for {
		client, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(ctx, client) })
	}
}

// admit decides what to do with a new connection under the fault now:
// true to connect it to the target. A black hole holds it, open, until
// the fault changes.
func (p *Proxy) admit(ctx context.Context, client net.Conn) bool {
	p.track(client, true)
	for {
		f, _, changed := p.state()
		switch f {
		case Reset:
			cut(client, true)
			return false
		case Partition:
			cut(client, false)
			return false
		case BlackHole:
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return false
			}
		}
		return true
	}
}

func (p *Proxy) serve(ctx context.Context, client net.Conn) {
	defer client.Close()
	defer p.track(client, false)
	if !p.admit(ctx, client) {
		return
	}
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	p.track(server, true)
	defer p.track(server, false)
	var wg sync.WaitGroup
	wg.Go(func() { p.pump(ctx, server, client, &p.up, &p.delivered[0]) })
	wg.Go(func() { p.pump(ctx, client, server, &p.down, &p.delivered[1]) })
	wg.Wait()
}

type chunk struct {
	data []byte
	due  time.Time // when the link delivers it: latency after it was read, in its queue place
}

// gate waits while the link stalls; false when the connection must end
// (the link resets or partitions, or ctx ends).
func (p *Proxy) gate(ctx context.Context) bool {
	for {
		f, _, changed := p.state()
		switch f {
		case Healthy:
			return true
		case Reset, Partition:
			return false
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// pump copies src to dst, delivering each chunk at the time the
// direction's shared schedule gave it when it was read, and holding it
// while the link stalls. When src ends, dst's write side is closed, so the
// far end sees EOF as it would over a real link.
func (p *Proxy) pump(ctx context.Context, dst, src net.Conn, pace *pacer, delivered *atomic.Int64) {
	ch := make(chan chunk, inFlight)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			if n > 0 {
				// Booked as it arrives: the link serves chunks first come,
				// first served, as a router queue does. (Booking as each was
				// written served connections round-robin: they all finished
				// together and then all waited a round trip while the link
				// idled, 68% of it with 16 downloads.)
				_, s, _ := p.state()
				due := pace.slot(time.Now().Add(s.Latency), n, s.Bandwidth)
				select {
				case ch <- chunk{data: buf[:n], due: due}:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	drop := func() {
		src.Close() // unblock the reader
		dst.Close()
		for range ch {
		}
	}
	for c := range ch {
		if wait := time.Until(c.due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				drop()
				return
			}
		}
		if !p.gate(ctx) {
			drop()
			return
		}
		if _, err := dst.Write(c.data); err != nil {
			drop()
			return
		}
		delivered.Add(int64(len(c.data)))
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
