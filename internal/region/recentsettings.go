package region

import (
	"context"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/meta"
)

// recentAge bounds how old a node's view of a kind of settings is
// (RecentSettings): quotas, the soft-delete policy and cache rules are
// consulted by pushes, deletes and pulls, so they are not read per
// request. A setting this node writes or applies is never missed by a
// read on this node once its write has committed: the kind's view is
// dropped before the write and not kept while it is under way
// (changingRecent), so a read between the commit and the write's return
// goes to the store. One another node of the region wrote is seen within
// recentAge.
const recentAge = time.Second

// recentSettings is a node's view of the live settings, by kind.
type recentSettings struct {
	mu       sync.Mutex
	byKind   map[string]recentKind
	changing map[string]int // writes of the kind under way on this node

	// hook, set by tests only, runs in a setting's write or apply before
	// its commit ("writing") and after it, before the write returns
	// ("committed"): where a stale view would be kept and show.
	hook func(stage string)
}

type recentKind struct {
	settings []meta.Setting
	read     time.Time
}

// RecentSettings lists the live settings of kind as read at most
// recentAge ago, or from the store while this node writes one of them.
func (r *Region) RecentSettings(ctx context.Context, kind string) ([]meta.Setting, error) {
	v := &r.recent
	v.mu.Lock()
	if v.changing[kind] > 0 {
		v.mu.Unlock()
		return r.db.Settings(ctx, kind, false)
	}
	defer v.mu.Unlock()
	if k, ok := v.byKind[kind]; ok && time.Since(k.read) < recentAge {
		return k.settings, nil
	}
	ss, err := r.db.Settings(ctx, kind, false)
	if err != nil {
		return nil, err
	}
	if v.byKind == nil {
		v.byKind = map[string]recentKind{}
	}
	v.byKind[kind] = recentKind{settings: ss, read: time.Now()}
	return ss, nil
}

// changingRecent marks a write of a setting of kind as under way: the
// kind's view is dropped and not kept until the returned func, called
// once the write has committed or failed, drops it again.
func (r *Region) changingRecent(kind string) (done func()) {
	v := &r.recent
	v.mu.Lock()
	if v.changing == nil {
		v.changing = map[string]int{}
	}
	v.changing[kind]++
	delete(v.byKind, kind)
	v.mu.Unlock()
	return func() {
		v.mu.Lock()
		if v.changing[kind]--; v.changing[kind] == 0 {
			delete(v.changing, kind)
		}
		delete(v.byKind, kind)
		v.mu.Unlock()
	}
}

// settingHook runs the test hook, if any.
func (r *Region) settingHook(stage string) {
	if r.recent.hook != nil {
		r.recent.hook(stage)
	}
}
