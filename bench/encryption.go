package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/georeg/georeg/internal/encryption"
)

// startEncrypted starts georeg serve with its content store encrypted
// under a local key file (region.encryption).
func startEncrypted(ctx context.Context, bin, data, logLevel string) (*server, error) {
	keyFile := data + ".key.json"
	if err := encryption.CreateLocalKeys(keyFile); err != nil {
		return nil, err
	}
	cfgFile := data + ".yaml"
	cfg := fmt.Sprintf("region:\n  encryption:\n    provider: local\n    keyFile: %s\n", keyFile)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	addr := freeAddr()
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfgFile, "--listen", addr, "--data", data, "--region", "bench", "--log-level", logLevel)
	if err := launch(cmd, data+".log", "http://"+addr+"/readyz", 20*time.Second); err != nil {
		return nil, fmt.Errorf("georeg serve, encrypted: %w", err)
	}
	return &server{cmd: cmd, addr: addr, base: "http://" + addr, twoStep: true}, nil
}

// encryptionSteps are what issue 21 asks of encryption at rest: upload,
// first and hot download of one large blob, and manifest GETs.
var encryptionSteps = []step{
	benchUpload, benchDownload, benchManifestGets,
}

// benchEncryption measures georeg with its content store encrypted
// against georeg without, in one run, alternating them (plain,
// encrypted, plain, encrypted) and keeping each one's better run of the
// two: the ratio of encrypted to unencrypted is what counts (target:
// >= 0.80 of the throughput).
func benchEncryption(ctx context.Context, bin, dir, logLevel string, size int64) ([]row, error) {
	plain := contender{"georeg unencrypted", func(ctx context.Context, data string) (*server, error) {
		s, err := startServer(ctx, bin, data, logLevel)
		if s != nil {
			s.twoStep = true
		}
		return s, err
	}}
	enc := contender{"georeg encrypted", func(ctx context.Context, data string) (*server, error) {
		return startEncrypted(ctx, bin, data, logLevel)
	}}
	all := []contender{enc, plain}
	results := make([][]figure, len(all))
	for round := range 2 {
		for i, c := range all {
			figs, err := measure(ctx, c, filepath.Join(dir, fmt.Sprintf("enc-%d-%d", round, i)), size, encryptionSteps)
			if err != nil {
				return nil, err
			}
			if results[i] == nil {
				results[i] = figs
				continue
			}
			for j := range figs { // the better of the two runs
				if (figs[j].higher && figs[j].value > results[i][j].value) || (!figs[j].higher && figs[j].value < results[i][j].value) {
					results[i][j] = figs[j]
				}
			}
		}
	}
	for j := range results[0] {
		f := &results[0][j]
		f.target, f.ratioTarget = 0, 0
		if f.unit == "MiB/s" || f.unit == "/s" {
			f.ratioTarget = 0.8
		}
	}
	return compare(all, results, "unencrypted"), nil
}
