package link

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoProxy starts an echo server and a proxy to it shaped as s; both stop
// when the test ends.
func echoProxy(t *testing.T, s Shape) *Proxy {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := Start(ctx, echo.Addr().String(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); echo.Close(); <-done; p.Wait() })
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLinkDeliversEverythingNoFasterThanTheLink sends bytes both ways
// through a shaped link and checks they arrive intact, and not sooner than
// the latency and bandwidth allow (a lower bound, which a slow machine
// cannot break).
func TestLinkDeliversEverythingNoFasterThanTheLink(t *testing.T) {
	s := Shape{Latency: 30 * time.Millisecond, Bandwidth: 20_000_000}
	p := echoProxy(t, s)
	data := make([]byte, 2_000_000)
	_, _ = rand.Read(data)
	c := dial(t, p)
	start := time.Now()
	go func() { _, _ = c.Write(data); _ = c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	elapsed := time.Since(start)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo through the link: %d of %d bytes, %v", len(got), len(data), err)
	}
	// Two traversals of 30 ms, and 2 MB at 20 MB/s (100 ms) at least once.
	if floor := 2*s.Latency + 100*time.Millisecond; elapsed < floor {
		t.Fatalf("the link delivered in %s, faster than its floor %s", elapsed, floor)
	}
}

// readAll reads from c until it has n bytes.
func readN(t *testing.T, c net.Conn, n int64) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return buf
}

// TestAStalledLinkHoldsTransfersMidwayAndResumesThem: a transfer under
// way stops where it is (the client has everything the link delivered
// and nothing more arrives), the connection stays open, and once the link
// is healthy again the rest arrives intact.
func TestAStalledLinkHoldsTransfersMidwayAndResumesThem(t *testing.T) {
	p := echoProxy(t, Shape{Bandwidth: 2_000_000})
	data := make([]byte, 4_000_000)
	_, _ = rand.Read(data)
	c := dial(t, p)
	go func() { _, _ = c.Write(data) }()
	got := readN(t, c, 500_000) // under way
	p.Set(Stall)
	_, atStall := p.Delivered()
	// A chunk being written as the stall began may still land: read until
	// nothing more comes, then nothing more may have come than that one.
	for i := 0; ; i++ {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, chunkSize)
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, os.ErrDeadlineExceeded) && n == 0 {
			break
		}
		if err != nil || i > 100 {
			t.Fatalf("reading a stalled link: %v after %d reads", err, i)
		}
	}
	if _, toClient := p.Delivered(); int64(len(got)) != toClient || toClient > atStall+chunkSize {
		t.Fatalf("a stalled link delivered %d bytes, %d after the stall began", toClient, toClient-atStall)
	}
	if len(got) >= len(data) {
		t.Fatal("the transfer finished: nothing was stalled")
	}
	p.Set(Healthy)
	got = append(got, readN(t, c, int64(len(data)-len(got)))...)
	if !bytes.Equal(got, data) {
		t.Fatal("the transfer resumed with other bytes")
	}
}

// TestABlackHoleHoldsNewConnectionsUntilItEnds: a connection made
// through a black hole gets no answer; it is served once the link heals.
func TestABlackHoleHoldsNewConnectionsUntilItEnds(t *testing.T) {
	p := echoProxy(t, Shape{})
	p.Set(BlackHole)
	c := dial(t, p)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a black hole answered %d bytes (%v)", n, err)
	}
	p.Set(Healthy)
	if got := readN(t, c, 4); string(got) != "ping" {
		t.Fatalf("after the black hole: %q", got)
	}
}

// TestResetAndPartitionCutEveryConnection: open connections end at once
// (reset: an error; partition: end of stream), and new ones are cut as
// they come, until the link heals.
func TestResetAndPartitionCutEveryConnection(t *testing.T) {
	for _, f := range []Fault{Reset, Partition} {
		t.Run(f.String(), func(t *testing.T) {
			p := echoProxy(t, Shape{})
			c := dial(t, p)
			_, _ = c.Write([]byte("x"))
			readN(t, c, 1)
			p.Set(f)
			conns := []net.Conn{c}
			// A new connection is cut at once: the dial itself may see the
			// reset, which is the cut this checks.
			if fresh, err := net.Dial("tcp", p.Addr()); err == nil {
				defer fresh.Close()
				conns = append(conns, fresh)
			}
			for _, conn := range conns {
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, _ = conn.Write([]byte("y"))
				n, err := conn.Read(make([]byte, 1))
				if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("%s: read %d bytes, %v; want the connection cut", f, n, err)
				}
			}
			p.Set(Healthy)
			c2 := dial(t, p)
			_, _ = c2.Write([]byte("z"))
			if got := readN(t, c2, 1); string(got) != "z" {
				t.Fatalf("after healing: %q", got)
			}
		})
	}
}

func TestParseFaultReadsEveryName(t *testing.T) {
	for _, f := range []Fault{Healthy, Stall, BlackHole, Reset, Partition} {
		if got, err := ParseFault(f.String()); err != nil || got != f {
			t.Fatalf("%s: %v %v", f, got, err)
		}
	}
	if _, err := ParseFault("flaky"); err == nil {
		t.Fatal("an unknown fault parsed")
	}
}
