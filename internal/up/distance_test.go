package up

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"
)

// TestLinkDeliversEverythingNoFasterThanTheLink sends bytes both ways
// through a shaped link and checks they arrive intact, and not sooner than
// the latency and bandwidth allow (a lower bound, which a slow machine
// cannot break).
func TestLinkDeliversEverythingNoFasterThanTheLink(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(c, c)
		c.Close()
	}()
	link := Link{Latency: 30 * time.Millisecond, Bandwidth: 20_000_000}
	p, err := StartProxy(ctx, echo.Addr().String(), link)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); echo.Close(); p.Wait() }()

	data := make([]byte, 2_000_000)
	_, _ = rand.Read(data)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	go func() { _, _ = c.Write(data); _ = c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	elapsed := time.Since(start)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo through the link: %d of %d bytes, %v", len(got), len(data), err)
	}
	// Two traversals of 30 ms, and 2 MB at 20 MB/s (100 ms) at least once.
	if floor := 2*link.Latency + 100*time.Millisecond; elapsed < floor {
		t.Fatalf("the link delivered in %s, faster than its floor %s", elapsed, floor)
	}
}
