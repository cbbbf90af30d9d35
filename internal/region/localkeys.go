package region

import (
	"context"
	"time"

	"github.com/georeg/georeg/internal/meta"
)

// LocalKeys returns the region's own private token-signing keys, oldest
// first. They stay in this region (every node of it shares them); peers
// get only their public halves, as signing-key settings.
func (r *Region) LocalKeys(ctx context.Context) ([]meta.LocalKey, error) { return r.db.LocalKeys(ctx) }

// PutLocalKey stores a new private signing key of the region, unless it
// has one made after since (another node made it): it reports
// whether it stored k.
func (r *Region) PutLocalKey(ctx context.Context, k meta.LocalKey, since time.Time) (bool, error) {
	return r.db.PutLocalKey(ctx, k, since)
}

// DeleteLocalKey forgets a retired private signing key.
func (r *Region) DeleteLocalKey(ctx context.Context, kid string) error {
	return r.db.DeleteLocalKey(ctx, kid)
}
