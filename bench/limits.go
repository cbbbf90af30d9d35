package main

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
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

	var directRate, coldRate, hotRate float64
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
		// Written with O_DIRECT, so not in the page cache: the first read
		// comes from the disk (at the kernel's readahead), the second from
		// memory.
		coldRate, hotRate = readRate(dir+"/direct", block), readRate(dir+"/direct", block)
	}

	syncLatency := smallSyncLatency(dir)

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
		{"limit: disk read, not cached", fmt.Sprintf("%.0f MiB/s", coldRate), "", "1 MiB reads of the file just written with O_DIRECT"},
		{"limit: read from the page cache", fmt.Sprintf("%.0f MiB/s", hotRate), "", "the same reads again"},
		{"limit: small durable write", fmt.Sprintf("%.2f ms", syncLatency), "", "create a 4 KiB file, fsync it and its directory (median of 200): a small push commits two blobs and three transactions"},
		{"limit: TCP loopback", fmt.Sprintf("%.0f MiB/s", loopRate), "", "one connection, sender and receiver on this machine"},
	}
}

// readRate reads the file at path with buf-sized reads and returns the rate.
func readRate(path string, buf []byte) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	start := time.Now()
	n, _ := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
	return mibps(n, time.Since(start))
}

func mibps(bytes int64, d time.Duration) float64 {
	return float64(bytes) / (1 << 20) / d.Seconds()
}

// smallSyncLatency returns the median time in milliseconds to make one
// small file durable the way a blob commit does: create, write 4 KiB,
// fsync the file, fsync its directory. A small push waits for five such
// durable writes (two blob commits, three transactions).
func smallSyncLatency(dir string) float64 {
	sub := filepath.Join(dir, "small")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return 0
	}
	d, err := os.Open(sub)
	if err != nil {
		return 0
	}
	defer d.Close()
	block := make([]byte, 4096)
	var took []float64
	for i := range 200 {
		start := time.Now()
		f, err := os.Create(filepath.Join(sub, strconv.Itoa(i)))
		if err != nil {
			return 0
		}
		_, _ = f.Write(block)
		_ = f.Sync()
		f.Close()
		_ = d.Sync()
		took = append(took, float64(time.Since(start).Microseconds())/1000)
	}
	return median(took)
}
