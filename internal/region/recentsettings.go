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
// request. A setting this node writes or applies drops its kind's view at
// once (settingChanged); one another node of the region wrote is seen
// within recentAge.
const recentAge = time.Second

// recentSettings is a node's view of the live settings, by kind.
type recentSettings struct {
	mu     sync.Mutex
	byKind map[string]recentKind
}

type recentKind struct {
	settings []meta.Setting
	read     time.Time
}

// RecentSettings lists the live settings of kind as read at most
// recentAge ago.
func (r *Region) RecentSettings(ctx context.Context, kind string) ([]meta.Setting, error) {
	v := &r.recent
	v.mu.Lock()
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

// forgetRecent drops the view of kind: the next read is fresh.
func (r *Region) forgetRecent(kind string) {
	r.recent.mu.Lock()
	delete(r.recent.byKind, kind)
	r.recent.mu.Unlock()
}
