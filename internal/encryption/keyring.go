package encryption

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/content/crypt"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// Keyring is a region's data keys (crypt.Keys): kept in its metadata
// store wrapped by the key service, unwrapped on first use and kept in
// memory for at most ttl, max of them at a time (never written anywhere
// unwrapped, never logged). The first use makes the first key.
type Keyring struct {
	db  *meta.DB
	ks  KeyService
	ttl time.Duration
	max int

	mu        sync.Mutex
	cache     map[crypt.KeyID]*cachedKey
	current   *crypt.KeyID // the current key's id, as read at currentAt
	currentAt time.Time
	status    error // the key service's last Status
	statusAt  time.Time
}

type cachedKey struct {
	key []byte
	at  time.Time
}

// Defaults.
const (
	DefaultKeyCacheTTL = 5 * time.Minute
	maxCachedKeys      = 256
	// statusEvery bounds how often Check asks the key service.
	statusEvery = 5 * time.Second
	// currentEvery bounds how often the current key's id is read from
	// the store (another node may have made a new one).
	currentEvery = 10 * time.Second
)

// NewKeyring returns the keyring of db's region over ks; ttl 0 is
// DefaultKeyCacheTTL.
func NewKeyring(db *meta.DB, ks KeyService, ttl time.Duration) *Keyring {
	if ttl <= 0 {
		ttl = DefaultKeyCacheTTL
	}
	return &Keyring{db: db, ks: ks, ttl: ttl, max: maxCachedKeys, cache: map[crypt.KeyID]*cachedKey{}}
}

// unavailable is the error of a key the key service cannot give now.
// It is an OCI UNAVAILABLE (503) naming the key, for the client.
func (k *Keyring) unavailable(id string, err error) error {
	return fmt.Errorf("%w: %w", crypt.ErrKeyUnavailable,
		ocierr.Unavailable.Withf("this region's encryption key is unavailable (data key %s, wrapped by %s): %v; pull from another region", id, k.ks.Name(), err))
}

// Current returns the current data key, making the region's first one
// when it has none.
func (k *Keyring) Current(ctx context.Context) (crypt.KeyID, []byte, error) {
	k.mu.Lock()
	cur, fresh := k.current, time.Since(k.currentAt) < currentEvery
	k.mu.Unlock()
	if cur == nil || !fresh {
		id, err := k.readCurrent(ctx)
		if err != nil {
			return crypt.KeyID{}, nil, err
		}
		cur = &id
	}
	dk, err := k.Key(ctx, *cur)
	return *cur, dk, err
}

// readCurrent reads the newest data key's id, making one if there is none.
func (k *Keyring) readCurrent(ctx context.Context) (crypt.KeyID, error) {
	for range 3 {
		keys, err := k.db.DataKeys(ctx)
		if err != nil {
			return crypt.KeyID{}, err
		}
		if len(keys) > 0 {
			id, err := crypt.ParseKeyID(keys[len(keys)-1].ID)
			if err != nil {
				return id, err
			}
			k.mu.Lock()
			k.current, k.currentAt = &id, time.Now()
			k.mu.Unlock()
			return id, nil
		}
		if _, err := k.newKey(ctx, time.Time{}); err != nil {
			return crypt.KeyID{}, err
		}
	}
	return crypt.KeyID{}, errors.New("no data key could be made")
}

// newKey makes a data key wrapped by the key service's current key and
// stores it, unless another was made after since.
func (k *Keyring) newKey(ctx context.Context, since time.Time) (crypt.KeyID, error) {
	var id crypt.KeyID
	if _, err := rand.Read(id[:]); err != nil {
		return id, err
	}
	dk := make([]byte, 32)
	if _, err := rand.Read(dk); err != nil {
		return id, err
	}
	wrapped, kek, err := k.ks.Encrypt(ctx, dk)
	if err != nil {
		return id, k.unavailable(id.String(), err)
	}
	_, err = k.db.PutDataKey(ctx, meta.DataKey{ID: id.String(), Wrapped: wrapped, KEKID: kek, Created: time.Now()}, since)
	clear(dk)
	return id, err
}

// Key returns data key id, unwrapped.
func (k *Keyring) Key(ctx context.Context, id crypt.KeyID) ([]byte, error) {
	k.mu.Lock()
	c := k.cache[id]
	if c != nil && time.Since(c.at) >= k.ttl {
		clear(c.key)
		delete(k.cache, id)
		c = nil
	}
	k.mu.Unlock()
	if c != nil {
		return bytesCopy(c.key), nil // the cache's own is cleared when it goes
	}
	keys, err := k.db.DataKeys(ctx)
	if err != nil {
		return nil, err
	}
	for _, row := range keys {
		if row.ID != id.String() {
			continue
		}
		dk, err := k.ks.Decrypt(ctx, row.Wrapped, row.KEKID)
		if err != nil {
			return nil, k.unavailable(row.ID, err)
		}
		if len(dk) != 32 {
			return nil, fmt.Errorf("data key %s unwrapped to %d bytes, want 32", row.ID, len(dk))
		}
		k.keep(id, bytesCopy(dk))
		return dk, nil
	}
	return nil, k.unavailable(id.String(), errors.New("not in this region's keyring"))
}

// keep caches dk, dropping the oldest beyond max.
func (k *Keyring) keep(id crypt.KeyID, dk []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.cache) >= k.max {
		var oldest crypt.KeyID
		first := true
		for kid, c := range k.cache {
			if first || c.at.Before(k.cache[oldest].at) {
				oldest, first = kid, false
			}
		}
		clear(k.cache[oldest].key)
		delete(k.cache, oldest)
	}
	k.cache[id] = &cachedKey{key: dk, at: time.Now()}
}

// Check reports whether the key service answers and the current data key
// unwraps: a region whose key is away is not ready.
func (k *Keyring) Check(ctx context.Context) error {
	k.mu.Lock()
	st, asked := k.status, !k.statusAt.IsZero() && time.Since(k.statusAt) < statusEvery
	k.mu.Unlock()
	if !asked {
		_, st = k.ks.Status(ctx)
		if st != nil {
			st = k.unavailable("(current)", st)
		}
		k.mu.Lock()
		k.status, k.statusAt = st, time.Now()
		k.mu.Unlock()
	}
	if st != nil {
		return st
	}
	_, _, err := k.Current(ctx)
	return err
}

var _ crypt.Keys = (*Keyring)(nil)

func bytesCopy(b []byte) []byte { return append([]byte(nil), b...) }

// Close closes the key service, when it holds a connection.
func (k *Keyring) Close() error {
	if c, ok := k.ks.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// Service names the key service.
func (k *Keyring) Service() string { return k.ks.Name() }

// Rotator is a key service that makes a new key version itself (the
// local key file); a KMS's keys are rotated in the KMS.
type Rotator interface {
	Rotate(ctx context.Context) (string, error)
}

// Plan is what a keyring's maintenance does: re-wrap the data keys not
// wrapped by the key service's current key-encryption key, and make a
// new current data key when the current one is not wrapped by it (new
// data goes under the new key version at once).
type Plan struct {
	Rewrap     []meta.DataKey
	NewCurrent bool
}

// PlanKeys decides a keyring's maintenance: keys oldest first (the last
// current), kek the key service's current key version.
func PlanKeys(keys []meta.DataKey, kek string) Plan {
	var p Plan
	for _, dk := range keys {
		if dk.KEKID != kek {
			p.Rewrap = append(p.Rewrap, dk)
		}
	}
	p.NewCurrent = len(keys) > 0 && keys[len(keys)-1].KEKID != kek
	return p
}

// Rotate switches to a new key version: a new one in the key service
// when it makes them (the local key file), the key service's current one
// otherwise; a new current data key wrapped by it, for new data at once.
// The data keys wrapped by older versions are re-wrapped by Maintain.
func (k *Keyring) Rotate(ctx context.Context) (string, error) {
	if r, ok := k.ks.(Rotator); ok {
		if _, err := r.Rotate(ctx); err != nil {
			return "", err
		}
	}
	kek, err := k.ks.Status(ctx)
	if err != nil {
		return "", k.unavailable("(current)", err)
	}
	if _, err := k.newKey(ctx, time.Now().Add(time.Hour)); err != nil {
		return "", err
	}
	k.forgetCurrent()
	return kek, nil
}

func (k *Keyring) forgetCurrent() {
	k.mu.Lock()
	k.current = nil
	k.mu.Unlock()
}

// Maintain carries out PlanKeys: a new current data key if the key
// service's key version changed (rotated in the KMS), then each data key
// wrapped by an older version re-wrapped by the current one (no blob is
// rewritten: a data key's bytes do not change). progress is told each
// key done; what a restart interrupts, the next Maintain finds again.
func (k *Keyring) Maintain(ctx context.Context, progress func(left int)) error {
	kek, err := k.ks.Status(ctx)
	if err != nil {
		return k.unavailable("(current)", err)
	}
	keys, err := k.db.DataKeys(ctx)
	if err != nil {
		return err
	}
	plan := PlanKeys(keys, kek)
	if plan.NewCurrent {
		if _, err := k.newKey(ctx, time.Now().Add(time.Hour)); err != nil {
			return err
		}
		k.forgetCurrent()
	}
	left := len(plan.Rewrap)
	progress(left)
	for _, dk := range plan.Rewrap {
		plain, err := k.ks.Decrypt(ctx, dk.Wrapped, dk.KEKID)
		if err != nil {
			return k.unavailable(dk.ID, err)
		}
		wrapped, newKEK, err := k.ks.Encrypt(ctx, plain)
		clear(plain)
		if err != nil {
			return k.unavailable(dk.ID, err)
		}
		if _, err := k.db.RewrapDataKey(ctx, dk.ID, dk.KEKID, wrapped, newKEK); err != nil {
			return err
		}
		left--
		progress(left)
	}
	return nil
}

// KeyVersions returns how many data keys each key version wraps, and the
// current data key's id.
func (k *Keyring) KeyVersions(ctx context.Context) (map[string]int, []meta.DataKey, error) {
	keys, err := k.db.DataKeys(ctx)
	if err != nil {
		return nil, nil, err
	}
	inUse := map[string]int{}
	for _, dk := range keys {
		inUse[dk.KEKID]++
	}
	return inUse, keys, nil
}

// KEK returns the key service's current key version.
func (k *Keyring) KEK(ctx context.Context) (string, error) { return k.ks.Status(ctx) }
