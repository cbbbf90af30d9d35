package up

import (
	"context"
	"net"
	"sync"
	"time"
)

// Link is a simulated network path between two regions: one-way latency
// in each direction and a bandwidth cap per direction, shared by all the
// connections over it, as a real link is. The kernel here has
// no netem, so `georeg up` shapes replication traffic in the application:
// each direction of a proxied connection delivers every chunk latency after
// it was read, paced to bandwidth.
type Link struct {
	Latency   time.Duration // one way
	Bandwidth int64         // bytes per second; 0: unlimited
}

// RTT is the link's round-trip time.
func (l Link) RTT() time.Duration { return 2 * l.Latency }

// DefaultDistance is the distance `georeg up` simulates between its three
// regions, roughly as between Virginia, the Netherlands and Singapore.
func DefaultDistance(a, b string) (Link, bool) {
	oneWay := map[[2]string]time.Duration{
		{"eastus", "westeurope"}:        40 * time.Millisecond,
		{"westeurope", "southeastasia"}: 80 * time.Millisecond,
		{"eastus", "southeastasia"}:     110 * time.Millisecond,
	}
	d, ok := oneWay[[2]string{a, b}]
	if !ok {
		d, ok = oneWay[[2]string{b, a}]
	}
	return Link{Latency: d, Bandwidth: 100_000_000}, ok
}

// chunkSize and inFlight bound what one direction of a connection holds:
// inFlight chunks of chunkSize, 16 MiB, above the bandwidth-delay product
// of the default links (100 MB/s x 110 ms = 11 MB), so the cap is the
// bandwidth, not the buffer.
const (
	chunkSize = 64 << 10
	inFlight  = 256
)

// Proxy listens on loopback and forwards every connection to a target
// through a Link.
type Proxy struct {
	l      net.Listener
	target string
	link   Link
	up     pacer // client -> target, shared by every connection
	down   pacer // target -> client
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
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

// StartProxy starts a proxy to target through link; it stops when ctx
// ends, and Wait returns when its connections have closed.
func StartProxy(ctx context.Context, target string, link Link) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{l: l, target: target, link: link, conns: map[net.Conn]bool{}}
	p.wg.Go(func() { p.accept(ctx) })
	go func() {
		<-ctx.Done()
		l.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	}()
	return p, nil
}

// Addr is where the proxy listens.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Wait returns when every connection has ended.
func (p *Proxy) Wait() { p.wg.Wait() }

// track records open connections, so the proxy closes them when it stops.
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

func (p *Proxy) serve(ctx context.Context, client net.Conn) {
	defer client.Close()
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	p.track(client, true)
	p.track(server, true)
	defer p.track(client, false)
	defer p.track(server, false)
	var wg sync.WaitGroup
	wg.Go(func() { pump(ctx, server, client, p.link, &p.up) })
	wg.Go(func() { pump(ctx, client, server, p.link, &p.down) })
	wg.Wait()
}

type chunk struct {
	data []byte
	due  time.Time // when the link delivers it: latency after it was read, in its queue place
}

// pump copies src to dst, delivering each chunk at the time the
// direction's shared schedule gave it when it was read. When src ends,
// dst's write side is closed, so the far end sees EOF as it would over a
// real link.
func pump(ctx context.Context, dst, src net.Conn, link Link, pace *pacer) {
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
				due := pace.slot(time.Now().Add(link.Latency), n, link.Bandwidth)
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
	for c := range ch {
		if wait := time.Until(c.due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			src.Close() // unblock the reader
			for range ch {
			}
			return
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
