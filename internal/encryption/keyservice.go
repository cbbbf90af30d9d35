// Package encryption is a region's encryption at rest: its configuration,
// the key service that holds the key-encryption key (a local key file,
// or a Kubernetes KMS v2 plugin), and the keyring of data keys the
// content store encrypts with (content/crypt), wrapped by that key and
// kept in the region's metadata store.
package encryption

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"
)

// KeyService wraps and unwraps data keys with a key-encryption key that
// never leaves it: the Kubernetes KMS v2 plugin API's three calls.
type KeyService interface {
	// Encrypt wraps plaintext under the current key; keyID names the key
	// version that did.
	Encrypt(ctx context.Context, plaintext []byte) (ciphertext []byte, keyID string, err error)
	// Decrypt unwraps ciphertext, wrapped by key version keyID.
	Decrypt(ctx context.Context, ciphertext []byte, keyID string) ([]byte, error)
	// Status names the current key version; an error when the service
	// cannot wrap or unwrap now.
	Status(ctx context.Context) (keyID string, err error)
	// Name says which service and key, for errors and status.
	Name() string
}

// A local key file holds key-encryption keys by version, the last one
// current: for `georeg up --encrypt` and tests. Its keys are as secret as
// the data: keep the file apart from the data it protects in production,
// or use a KMS plugin.
type keyFile struct {
	Keys []fileKey `json:"keys"`
}

type fileKey struct {
	ID      string    `json:"id"`
	Key     []byte    `json:"key"` // 32 bytes, AES-256
	Created time.Time `json:"created"`
}

var fileKeyID = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// LocalKeys is a KeyService over a local key file.
type LocalKeys struct {
	path string
	mu   sync.Mutex
	keys map[string]cipher.AEAD
	cur  string
	read time.Time
}

// OpenLocalKeys reads the key file at path.
func OpenLocalKeys(path string) (*LocalKeys, error) {
	l := &LocalKeys{path: path}
	if err := l.load(); err != nil {
		return nil, err
	}
	return l, nil
}

// CreateLocalKeys writes a key file with one new key at path (mode 0600),
// unless one is there.
func CreateLocalKeys(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return writeKeyFile(path, keyFile{Keys: []fileKey{newFileKey(1)}})
}

// RotateLocalKeys adds a new key version to the key file at path, which
// becomes current; the old ones stay, to unwrap what they wrapped.
func RotateLocalKeys(path string) (string, error) {
	kf, err := readKeyFile(path)
	if err != nil {
		return "", err
	}
	k := newFileKey(len(kf.Keys) + 1)
	kf.Keys = append(kf.Keys, k)
	return k.ID, writeKeyFile(path, kf)
}

func newFileKey(n int) fileKey {
	k := fileKey{ID: fmt.Sprintf("local-%d", n), Key: make([]byte, 32), Created: time.Now().UTC()}
	_, _ = rand.Read(k.Key)
	return k
}

func writeKeyFile(path string, kf keyFile) error {
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readKeyFile(path string) (keyFile, error) {
	var kf keyFile
	b, err := os.ReadFile(path)
	if err != nil {
		return kf, fmt.Errorf("key file: %w", err)
	}
	if err := json.Unmarshal(b, &kf); err != nil {
		return kf, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(kf.Keys) == 0 {
		return kf, fmt.Errorf("key file %s holds no key", path)
	}
	for _, k := range kf.Keys {
		if !fileKeyID.MatchString(k.ID) || len(k.Key) != 32 {
			return kf, fmt.Errorf("key file %s: key %q: want an id of lower-case letters, digits and '-' and 32 bytes", path, k.ID)
		}
	}
	return kf, nil
}

// load (re)reads the key file: a rotation by another process is seen.
func (l *LocalKeys) load() error {
	kf, err := readKeyFile(l.path)
	if err != nil {
		return err
	}
	keys := map[string]cipher.AEAD{}
	for _, k := range kf.Keys {
		block, err := aes.NewCipher(k.Key)
		if err != nil {
			return err
		}
		if keys[k.ID], err = cipher.NewGCM(block); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.keys, l.cur, l.read = keys, kf.Keys[len(kf.Keys)-1].ID, time.Now()
	l.mu.Unlock()
	return nil
}

// fresh rereads the file at most once a second.
func (l *LocalKeys) fresh() error {
	l.mu.Lock()
	stale := time.Since(l.read) > time.Second
	l.mu.Unlock()
	if stale {
		return l.load()
	}
	return nil
}

// Name names the key file.
func (l *LocalKeys) Name() string { return "local key file " + l.path }

// Encrypt wraps plaintext under the current key: nonce, then sealed bytes.
func (l *LocalKeys) Encrypt(_ context.Context, plaintext []byte) ([]byte, string, error) {
	if err := l.fresh(); err != nil {
		return nil, "", err
	}
	l.mu.Lock()
	aead, id := l.keys[l.cur], l.cur
	l.mu.Unlock()
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", err
	}
	return aead.Seal(nonce, nonce, plaintext, []byte(id)), id, nil
}

// Decrypt unwraps ciphertext sealed by key version keyID.
func (l *LocalKeys) Decrypt(_ context.Context, ciphertext []byte, keyID string) ([]byte, error) {
	if err := l.fresh(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	aead, ok := l.keys[keyID]
	l.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s has no key %q", l.Name(), keyID)
	}
	if len(ciphertext) < aead.NonceSize() {
		return nil, errors.New("a wrapped key shorter than its nonce")
	}
	pt, err := aead.Open(nil, ciphertext[:aead.NonceSize()], ciphertext[aead.NonceSize():], []byte(keyID))
	if err != nil {
		return nil, fmt.Errorf("unwrap with %s key %s: %w", l.Name(), keyID, err)
	}
	return pt, nil
}

// Status names the current key; an error when the file cannot be read.
func (l *LocalKeys) Status(context.Context) (string, error) {
	if err := l.fresh(); err != nil {
		return "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur, nil
}

// Rotate adds a key version to the key file, current from now on.
func (l *LocalKeys) Rotate(context.Context) (string, error) {
	id, err := RotateLocalKeys(l.path)
	if err != nil {
		return "", err
	}
	return id, l.load()
}
