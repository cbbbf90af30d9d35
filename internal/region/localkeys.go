package region

import (
	"context"

	"github.com/georeg/georeg/internal/meta"
)

// LocalKeys returns the region's own private token-signing keys, oldest
// first. They stay in this region (every node of it shares them); peers
// get only their public halves, as signing-key settings.
func (r *Region) LocalKeys(ctx context.Context) ([]meta.LocalKey, error) { return r.db.LocalKeys(ctx) }

// PutLocalKey stores a new private signing key of the region.
func (r *Region) PutLocalKey(ctx context.Context, k meta.LocalKey) error {
	return r.db.PutLocalKey(ctx, k)
}

// DeleteLocalKey forgets a retired private signing key.
func (r *Region) DeleteLocalKey(ctx context.Context, kid string) error {
	return r.db.DeleteLocalKey(ctx, kid)
}
