package region

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/georeg/georeg/internal/cost"
	"github.com/georeg/georeg/internal/ocierr"
)

// PricesName is the price table's setting name (kind PolicyKind): the
// per-GB prices `georeg usage` estimates transfer costs with
// (internal/cost). Unset, every price is 0.
const PricesName = "prices"

// Prices returns the price table (every price 0 when never set).
func (r *Region) Prices(ctx context.Context) (cost.Prices, error) {
	var p cost.Prices
	s, err := r.db.Setting(ctx, PolicyKind, PricesName)
	if isNotFound(err) {
		return p.WithDefaults(), nil
	}
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(s.Value, &p); err != nil {
		return p, fmt.Errorf("price table: %w", err)
	}
	return p.WithDefaults(), nil
}

// SetPrices sets the price table, for every region.
func (r *Region) SetPrices(ctx context.Context, p cost.Prices) (cost.Prices, error) {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return p, ocierr.RequestInvalid.Withf("prices: %v", err)
	}
	value, _ := json.Marshal(p)
	_, err := r.PutSetting(ctx, PolicyKind, PricesName, value)
	return p, err
}
