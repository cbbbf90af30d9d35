package region

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/ocierr"
)

// Locks, as ACR's `repository update --write-enabled/--delete-enabled`,
// on a repository or on one image (a tag). They are settings of kind
// "lock" named "repo" or "repo:tag", so they replicate like every setting.
//
// An image lock pins its tag: the region that sets it records the digest
// the tag has there, and every region, when the lock arrives, sets the
// tag to that digest at the lock's version, whatever the tag holds (in the
// same transaction as the lock). From then on, in every region, the tag
// is not moved or deleted, by a client or by a change replicating from a
// peer; a delete-disabled image lock also keeps its manifest from being
// deleted. So a tag update made in region B before B heard of a lock set
// in region A is undone in B when the lock arrives, and refused elsewhere:
// the lock wins the race in every region.
//
// A repository lock refuses the writes (or deletes) clients make in a
// region once it is there; a change that was made in another region
// before the lock arrived still applies (last-writer-wins), so lock the
// image to pin a tag across regions.

// LockKind is the setting kind of locks.
const LockKind = "lock"

// Lock is a lock's value.
type Lock struct {
	WriteEnabled  bool          `json:"writeEnabled"`
	DeleteEnabled bool          `json:"deleteEnabled"`
	Digest        digest.Digest `json:"digest,omitempty"` // an image lock's pinned manifest
}

// LockName names the lock of repo, or of repo:tag.
func LockName(repo, tag string) string {
	if tag == "" {
		return repo
	}
	return repo + ":" + tag
}

// locks returns the repository's and the tag's lock ("" tag: none), read
// in tx; nil when there is none.
func locks(ctx context.Context, tx *meta.Tx, repo, tag string) (repoLock, tagLock *Lock, err error) {
	names := []string{repo}
	if tag != "" {
		names = append(names, LockName(repo, tag))
	}
	got, err := tx.SettingsNamed(ctx, LockKind, names...)
	if err != nil {
		return nil, nil, err
	}
	read := func(name string) (*Lock, error) {
		s := got[name]
		if s == nil {
			return nil, nil
		}
		var l Lock
		if err := json.Unmarshal(s.Value, &l); err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		return &l, nil
	}
	if repoLock, err = read(repo); err != nil || tag == "" {
		return repoLock, nil, err
	}
	tagLock, err = read(LockName(repo, tag))
	return repoLock, tagLock, err
}

// frozen reports whether an image lock keeps its tag where it is.
func (l *Lock) frozen() bool { return l != nil && (!l.WriteEnabled || !l.DeleteEnabled) }

// liftFlag is the flag whose true lifts a frozen image lock: write-enabled
// when it is write-disabled (as in ACR, that locks the image whole: it is
// neither updated nor deleted), else delete-enabled.
func (l *Lock) liftFlag() string {
	if !l.WriteEnabled {
		return "write-enabled"
	}
	return "delete-enabled"
}

func lockedError(name, what, flag string) error {
	return ocierr.Denied.WithDetail(fmt.Sprintf("%s is locked (%s false): it cannot be %s in any region; unlock it with: georeg repository update --name %s --%s true",
		name, flag, what, lockTarget(name), flag), map[string]string{"lock": name})
}

// lockTarget renders a lock name as the flags of `repository update`.
func lockTarget(name string) string {
	if repo, tag, ok := splitLockName(name); ok {
		return repo + " --image " + tag
	}
	return name
}

// checkPush refuses a local push to repo (tag "" for by digest) that a
// lock forbids; pushing the digest an image lock pins changes nothing and
// is let through.
func checkPush(ctx context.Context, tx *meta.Tx, repo, tag string, d digest.Digest) error {
	repoLock, tagLock, err := locks(ctx, tx, repo, tag)
	if err != nil {
		return err
	}
	if repoLock != nil && !repoLock.WriteEnabled {
		return lockedError(repo, "written", "write-enabled")
	}
	if tagLock.frozen() && tagLock.Digest != d {
		return lockedError(LockName(repo, tag), "overwritten", tagLock.liftFlag())
	}
	return nil
}

// checkTagDelete refuses a local delete of repo:tag that a lock forbids.
func checkTagDelete(ctx context.Context, tx *meta.Tx, repo, tag string) error {
	repoLock, tagLock, err := locks(ctx, tx, repo, tag)
	if err != nil {
		return err
	}
	if repoLock != nil && !repoLock.DeleteEnabled {
		return lockedError(repo, "deleted from", "delete-enabled")
	}
	if tagLock.frozen() {
		return lockedError(LockName(repo, tag), "deleted", tagLock.liftFlag())
	}
	return nil
}

// checkManifestDelete refuses a local delete of manifest d of repo that a
// lock forbids: a delete-disabled repository, or a locked tag on it.
func checkManifestDelete(ctx context.Context, tx *meta.Tx, repo string, d digest.Digest) error {
	repoLock, _, err := locks(ctx, tx, repo, "")
	if err != nil {
		return err
	}
	if repoLock != nil && !repoLock.DeleteEnabled {
		return lockedError(repo, "deleted from", "delete-enabled")
	}
	if name, l, err := pinnedBy(ctx, tx, repo, d); err != nil || name != "" {
		if err != nil {
			return err
		}
		return lockedError(name, "deleted", l.liftFlag())
	}
	return nil
}

// CheckRepositoryDelete refuses, with the lock's DENIED, a delete of every
// manifest of repo that some lock forbids, so such a delete changes
// nothing rather than stopping half way.
func (r *Region) CheckRepositoryDelete(ctx context.Context, repo string) error {
	ms, err := r.db.ManifestList(ctx, repo)
	if err != nil {
		return err
	}
	return r.db.Update(ctx, func(tx *meta.Tx) error { // reads only: commits nothing
		for _, m := range ms {
			if err := checkManifestDelete(ctx, tx, repo, m.Digest); err != nil {
				return err
			}
		}
		return nil
	})
}

// pinnedBy returns the name and value of an image lock of repo that pins
// d (or whose tag points at d), "" for none.
func pinnedBy(ctx context.Context, tx *meta.Tx, repo string, d digest.Digest) (string, *Lock, error) {
	tags, err := tx.LiveTags(ctx, repo, d)
	if err != nil {
		return "", nil, err
	}
	for _, tag := range tags {
		if _, l, err := locks(ctx, tx, repo, tag); err != nil || l.frozen() {
			return LockName(repo, tag), l, err
		}
	}
	settings, err := tx.Settings(ctx, LockKind)
	if err != nil {
		return "", nil, err
	}
	for _, s := range settings {
		var l Lock
		if json.Unmarshal(s.Value, &l) == nil && l.Digest == d && l.frozen() && len(s.Name) > len(repo) && s.Name[:len(repo)+1] == repo+":" {
			return s.Name, &l, nil
		}
	}
	return "", nil, nil
}

// tagFrozen reports whether a replicated change to repo:tag is refused.
func tagFrozen(ctx context.Context, tx *meta.Tx, repo, tag string) (bool, error) {
	_, l, err := locks(ctx, tx, repo, tag)
	return l.frozen(), err
}

// pinLock applies a lock setting's pin in tx: an image lock's tag is set
// to its digest at the lock's version. It returns the tag it pinned (tag
// "" for none), whose cache entry the caller invalidates once tx has
// committed, as every other write does (invariant 5).
func (r *Region) pinLock(ctx context.Context, tx *meta.Tx, s meta.Setting) (repo, tag string, err error) {
	if s.Kind != LockKind || s.Deleted {
		return "", "", nil
	}
	var l Lock
	if err := json.Unmarshal(s.Value, &l); err != nil || l.Digest == "" || !l.frozen() {
		return "", "", nil
	}
	repo, tag, ok := splitLockName(s.Name)
	if !ok {
		return "", "", nil
	}
	return repo, tag, tx.PinTag(ctx, repo, tag, l.Digest, s.Version, r.now())
}

func splitLockName(name string) (repo, tag string, ok bool) {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == ':' {
			return name[:i], name[i+1:], true
		}
	}
	return name, "", false
}

// SetLock locks or unlocks repo, or repo:tag (tag set), in every region.
// An image lock records the digest the tag has here. Both flags true
// removes the lock. NAME_UNKNOWN or MANIFEST_UNKNOWN for what is not here.
func (r *Region) SetLock(ctx context.Context, repo, tag string, writeEnabled, deleteEnabled bool) (*Lock, error) {
	name := LockName(repo, tag)
	if writeEnabled && deleteEnabled {
		if _, err := r.db.Setting(ctx, LockKind, name); isNotFound(err) {
			return &Lock{WriteEnabled: true, DeleteEnabled: true}, nil
		}
		_, err := r.DeleteSetting(ctx, LockKind, name)
		return &Lock{WriteEnabled: true, DeleteEnabled: true}, err
	}
	l := Lock{WriteEnabled: writeEnabled, DeleteEnabled: deleteEnabled}
	if ok, err := r.db.RepositoryExists(ctx, repo); err != nil || !ok {
		if err != nil {
			return nil, err
		}
		return nil, ocierr.NameUnknown.Withf("repository %s is not in this region", repo)
	}
	if tag != "" {
		if s, err := r.db.Setting(ctx, LockKind, name); err == nil {
			var old Lock
			if json.Unmarshal(s.Value, &old) == nil && old.Digest != "" {
				l.Digest = old.Digest // keep the pin of a lock being changed
			}
		}
		if l.Digest == "" {
			t, err := r.db.GetTag(ctx, repo, tag)
			if isNotFound(err) {
				return nil, ocierr.ManifestUnknown.Withf("tag %s:%s is not in this region; lock an image that is here", repo, tag)
			}
			if err != nil {
				return nil, err
			}
			l.Digest = t.Digest
		}
	}
	value, _ := json.Marshal(l)
	if _, err := r.PutSetting(ctx, LockKind, name, value); err != nil {
		return nil, err
	}
	return &l, nil
}

// LockOf returns the lock of repo or repo:tag, or nil.
func (r *Region) LockOf(ctx context.Context, repo, tag string) (*Lock, error) {
	s, err := r.db.Setting(ctx, LockKind, LockName(repo, tag))
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var l Lock
	return &l, json.Unmarshal(s.Value, &l)
}
