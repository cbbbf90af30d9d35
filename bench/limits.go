package main

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// limits measures what bounds every figure: SHA-256 speed on one core,
// a durable sequential write (write + fsync), and TCP over loopback.
func limits(dir string, size int64) []row {
	_ = os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	n := size >> 20

	h := sha256.New()
	start := time.Now()
	for range n {
		h.Write(block)
	}
	shaRate := mibps(size, time.Since(start))

	f, err := os.Create(dir + "/disk")
	var diskRate float64
	if err == nil {
		start = time.Now()
		for range n {
			_, _ = f.Write(block)
		}
		_ = f.Sync()
		diskRate = mibps(size, time.Since(start))
		f.Close()
	}

	var directRate float64
	if f, err := os.OpenFile(dir+"/direct", os.O_CREATE|os.O_WRONLY|syscall.O_DIRECT, 0o644); err == nil {
		start = time.Now()
		for range n {
			if _, err := f.Write(block); err != nil { // a 1 MiB heap block is page-aligned
				break
			}
		}
		_ = f.Sync()
		directRate = mibps(size, time.Since(start))
		f.Close()
	}

	var loopRate float64
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}()
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			start = time.Now()
			for range n * 4 {
				_, _ = c.Write(block)
			}
			c.Close()
			loopRate = mibps(size*4, time.Since(start))
		}
		l.Close()
	}
	return []row{
		{"limit: SHA-256, one core", fmt.Sprintf("%.0f MiB/s", shaRate), "", "an upload hashes every byte once"},
		{"limit: disk write + fsync", fmt.Sprintf("%.0f MiB/s", diskRate), "", "buffered writes, one fsync at the end"},
		{"limit: disk write, O_DIRECT + fsync", fmt.Sprintf("%.0f MiB/s", directRate), "", "1 MiB writes, as uploads write"},
		{"limit: TCP loopback", fmt.Sprintf("%.0f MiB/s", loopRate), "", "one connection, sender and receiver on this machine"},
	}
}

func mibps(bytes int64, d time.Duration) float64 {
	return float64(bytes) / (1 << 20) / d.Seconds()
}
