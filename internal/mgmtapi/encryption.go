package mgmtapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/georeg/georeg/internal/content/crypt"
	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/region"
)

func (a *API) encryptionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_georeg/v1/encryption", a.handle(a.encryptionStatus))
	mux.HandleFunc("POST /_georeg/v1/encryption/rotate", a.handle(a.rotateEncryption))
}

// encryptionStatus serves GET /_georeg/v1/encryption: this region's
// keys and the progress of re-wrapping and encrypting in place.
func (a *API) encryptionStatus(ctx context.Context, _ *http.Request) (any, error) {
	st, err := a.region.EncryptionStatus(ctx)
	if err != nil {
		return nil, ocierr.Unknown.Withf("encryption status: %v", err)
	}
	return st, nil
}

// rotateEncryption serves POST /_georeg/v1/encryption/rotate: a new key
// version for new data now, the older data keys re-wrapped in the
// background (GET /_georeg/v1/encryption shows them go).
func (a *API) rotateEncryption(ctx context.Context, _ *http.Request) (any, error) {
	st, err := a.region.RotateEncryptionKey(ctx)
	switch {
	case errors.Is(err, region.ErrEncryptionOff):
		return nil, ocierr.RequestInvalid.Withf("%v", err)
	case errors.Is(err, crypt.ErrKeyUnavailable):
		return nil, err // an OCI UNAVAILABLE naming the key
	case err != nil:
		return nil, ocierr.Unknown.Withf("rotate: %v", err)
	}
	return st, nil
}
