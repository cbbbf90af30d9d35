package region

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/content/crypt"
	"github.com/georeg/georeg/internal/encryption"
)

// A region with encryption on runs one job (leased: one node at a time)
// that keeps its keys and its store as the configuration says: data keys
// wrapped by an older key version re-wrapped by the current one, and
// blobs stored before encryption was turned on encrypted in place. Both
// resume from what the stores hold after a restart (no job state is
// kept apart), and both report their progress in the encryption status.

// encryptionEvery is how often the job looks again without being woken.
const encryptionEvery = 30 * time.Second

// encryptionState is the job's progress, as this node saw it.
type encryptionState struct {
	mu         sync.Mutex
	wake       chan struct{}
	rewrapLeft int
	plainLeft  int // blobs still in plaintext at the last count
	plainDone  int // encrypted in place by this process
	failed     int // blobs not encrypted (their bytes do not match their digest)
	lastPass   time.Time
	lastErr    string
	// allEncrypted: a pass found no blob in plaintext, and none can
	// appear (this region writes encrypted), so later passes do not list
	// the store again until a restart.
	allEncrypted bool
}

// EncryptionStatus is what `georeg encryption status` shows.
type EncryptionStatus struct {
	Region string `json:"region"`
	// Enabled is false for a region that does not encrypt at rest.
	Enabled bool `json:"enabled"`
	// Provider and KeyService say where the key-encryption key is.
	Provider   string `json:"provider,omitempty"`
	KeyService string `json:"keyService,omitempty"`
	// KeyVersion is the key service's current key version; KeyError why
	// it could not be asked.
	KeyVersion string `json:"keyVersion,omitempty"`
	KeyError   string `json:"keyError,omitempty"`
	// KeyVersionsInUse counts the data keys each key version wraps: a
	// version no longer listed can be disabled in the key service.
	KeyVersionsInUse map[string]int `json:"keyVersionsInUse,omitempty"`
	DataKeys         int            `json:"dataKeys"`
	CurrentDataKey   string         `json:"currentDataKey,omitempty"`
	// RewrapPending is how many data keys still wait to be re-wrapped by
	// the current key version.
	RewrapPending int `json:"rewrapPending"`
	// PlaintextBlobs is how many blobs stored before encryption was on
	// are still in plaintext (at the job's last count); Encrypted how many
	// it encrypted in place since this node started; Failed how many it
	// left because their bytes do not match their digest.
	PlaintextBlobs int       `json:"plaintextBlobs"`
	Encrypted      int       `json:"encrypted"`
	Failed         int       `json:"failed,omitempty"`
	LastPass       time.Time `json:"lastPass,omitzero"`
	LastError      string    `json:"lastError,omitempty"`
}

// SetKeyring is the region's keyring, when it encrypts (Open sets it).
func (r *Region) SetKeyring(k *encryption.Keyring) {
	r.keyring = k
	r.enc.wake = make(chan struct{}, 1)
}

// Keyring is the region's keyring, or nil.
func (r *Region) Keyring() *encryption.Keyring { return r.keyring }

func (r *Region) crypt() *crypt.Backend {
	b, _ := r.store.Backend().(*crypt.Backend)
	return b
}

// RotateEncryptionKey switches the region to a new key version for new
// data at once, and wakes the job to re-wrap the older data keys.
func (r *Region) RotateEncryptionKey(ctx context.Context) (EncryptionStatus, error) {
	if r.keyring == nil {
		return EncryptionStatus{}, errEncryptionOff
	}
	if _, err := r.keyring.Rotate(ctx); err != nil {
		return EncryptionStatus{}, err
	}
	select {
	case r.enc.wake <- struct{}{}:
	default:
	}
	return r.EncryptionStatus(ctx)
}

var errEncryptionOff = errors.New("this region does not encrypt at rest: set region.encryption (docs/security.md)")

// ErrEncryptionOff is what encryption commands answer on a region that
// does not encrypt.
var ErrEncryptionOff = errEncryptionOff

// EncryptionStatus reports the region's keys and the job's progress.
func (r *Region) EncryptionStatus(ctx context.Context) (EncryptionStatus, error) {
	st := EncryptionStatus{Region: r.cfg.Name, Enabled: r.keyring != nil}
	if r.keyring == nil {
		return st, nil
	}
	st.Provider, st.KeyService = r.cfg.Encryption.Provider, r.keyring.Service()
	kek, err := r.keyring.KEK(ctx)
	if err != nil {
		st.KeyError = err.Error()
	}
	st.KeyVersion = kek
	inUse, keys, err := r.keyring.KeyVersions(ctx)
	if err != nil {
		return st, err
	}
	st.KeyVersionsInUse, st.DataKeys = inUse, len(keys)
	if len(keys) > 0 {
		st.CurrentDataKey = keys[len(keys)-1].ID
	}
	r.enc.mu.Lock()
	st.RewrapPending = r.enc.rewrapLeft // as the job last counted, when the key service cannot be asked
	r.enc.mu.Unlock()
	if kek != "" {
		st.RewrapPending = len(encryption.PlanKeys(keys, kek).Rewrap)
	}
	r.enc.mu.Lock()
	st.PlaintextBlobs, st.Encrypted, st.Failed = r.enc.plainLeft, r.enc.plainDone, r.enc.failed
	st.LastPass, st.LastError = r.enc.lastPass, r.enc.lastErr
	r.enc.mu.Unlock()
	return st, nil
}

// RunEncryption is the job: a pass at start, every encryptionEvery and
// when woken, until ctx ends. A region without encryption returns.
func (r *Region) RunEncryption(ctx context.Context) error {
	if r.keyring == nil {
		<-ctx.Done()
		return nil
	}
	for {
		err := r.encryptionPass(ctx)
		r.enc.mu.Lock()
		r.enc.lastPass, r.enc.lastErr = time.Now(), ""
		if err != nil {
			r.enc.lastErr = err.Error()
		}
		r.enc.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "encryption pass", "error", err)
		}
		t := time.NewTimer(encryptionEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-r.enc.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// encryptionPass re-wraps the data keys, then encrypts the blobs still in
// plaintext, counting them first.
func (r *Region) encryptionPass(ctx context.Context) error {
	if err := r.keyring.Maintain(ctx, func(left int) {
		r.enc.mu.Lock()
		r.enc.rewrapLeft = left
		r.enc.mu.Unlock()
	}); err != nil {
		return fmt.Errorf("re-wrap data keys: %w", err)
	}
	cb := r.crypt()
	r.enc.mu.Lock()
	done := r.enc.allEncrypted
	r.enc.mu.Unlock()
	if cb == nil || done {
		return nil
	}
	var keys []string
	if err := cb.Plaintext(ctx, "blobs/", func(key string, _ int64, _ bool) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		return fmt.Errorf("list plaintext blobs: %w", err)
	}
	sort.Strings(keys)
	r.setPlainLeft(len(keys))
	if len(keys) == 0 {
		r.enc.mu.Lock()
		r.enc.allEncrypted = true
		r.enc.mu.Unlock()
		return nil
	}
	r.log.InfoContext(ctx, "encrypting blobs stored in plaintext", "count", len(keys))
	failed := 0
	for i, key := range keys {
		d, ok := blobKeyDigest(key)
		if !ok {
			continue // not a blob's key: left as it is
		}
		err := cb.EncryptObject(ctx, key, d)
		switch {
		case errors.Is(err, crypt.ErrCorrupt):
			failed++
			r.log.ErrorContext(ctx, "a blob stored in plaintext does not match its digest: left unencrypted", "digest", d, "error", err)
		case err != nil:
			return fmt.Errorf("encrypt %s: %w", d, err)
		default:
			r.enc.mu.Lock()
			r.enc.plainDone++
			r.enc.mu.Unlock()
		}
		r.setPlainLeft(len(keys) - i - 1 + failed)
	}
	r.enc.mu.Lock()
	r.enc.failed = failed
	r.enc.mu.Unlock()
	return nil
}

func (r *Region) setPlainLeft(n int) {
	r.enc.mu.Lock()
	r.enc.plainLeft = n
	r.enc.mu.Unlock()
}

// blobKeyDigest is the digest a blob's key (content.BlobKey) names.
func blobKeyDigest(key string) (digest.Digest, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0] != "blobs" {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[3])
	if d.Validate() != nil || !strings.HasPrefix(parts[3], parts[2]) {
		return "", false
	}
	return d, true
}
