package meta_test

import (
	"database/sql"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
)

// BenchmarkServingASnapshot reads and encodes, as the snapshot handler
// does, a SQLite store of 20,000 image manifests with a tag each in 200
// repositories: what a Ready region spends on a region that joins
// (docs/performance.md, "Joining from a snapshot").
func BenchmarkServingASnapshot(b *testing.B) {
	ctx := b.Context()
	path := filepath.Join(b.TempDir(), "meta.db")
	db, err := meta.OpenSQLite(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	layer := digest.FromString("layer")
	const n = 20_000
	tx, err := raw.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		repo := fmt.Sprintf("gen/r%d", i/100)
		payload := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%[2]s","size":1},`+
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%[2]s","size":1}],`+
			`"annotations":{"org.opencontainers.image.revision":"%040[1]x","org.opencontainers.image.title":"generated %[1]d"}}`, i, layer)
		d := digest.FromBytes(payload).String()
		v := int64(1)<<40 + int64(i)
		if i%100 == 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO repositories (name, created_at) VALUES ($1, 0)`, repo); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO manifests (repo, digest, media_type, size, payload, created_at, version, origin, deleted)
			VALUES ($1, $2, 'application/vnd.oci.image.manifest.v1+json', $4, $5, 0, $3, 'eastus', 0)`, repo, d, v, len(payload), payload); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tags (repo, name, digest, version, origin, updated_at, deleted) VALUES ($1, $2, $3, $4, 'eastus', 0, 0)`,
			repo, fmt.Sprint("t", i%100), d, v); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO presence (repo, digest, region, since, seq) VALUES ($1, $2, 'eastus', 0, 0)`, repo, d); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	for _, format := range []int{meta.SnapshotFormatDefault, meta.SnapshotFormat} {
		b.Run(fmt.Sprint("format", format), func(b *testing.B) { serveSnapshot(b, db, format, n) })
	}
}

func serveSnapshot(b *testing.B, db *meta.DB, format, n int) {
	ctx := b.Context()
	var buf []byte
	cpu0 := processCPU()
	for b.Loop() {
		bytes := 0
		err := db.Snapshot(ctx, "eastus", format, func(meta.SnapshotHeader) error { return nil }, func(sr *meta.SnapshotRepo) error {
			var err error
			buf, err = sr.AppendJSON(buf[:0])
			bytes += len(buf)
			_, _ = io.Discard.Write(buf)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(bytes)/float64(n), "B/manifest")
	}
	b.ReportMetric((processCPU()-cpu0).Seconds()*1e6/float64(b.N)/float64(n), "CPU-µs/manifest")
}

// processCPU is the user and system CPU this process spent so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
