package ociapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/georeg/georeg/internal/ocierr"
)

// Data endpoint URLs are signed when DataKey is set (auth on): the API
// checks the client's access, then redirects to the data endpoint with
// ?expires=&sig= (HMAC-SHA256 of path and expiry, valid dataURLTTL), as a
// presigned object-store URL is. The data endpoint serves only URLs whose
// signature holds, so the bytes are not open to anyone who knows a digest.

// dataURLTTL is how long a signed data URL is valid.
const dataURLTTL = 5 * time.Minute

func (a *API) signData(path string, now time.Time) string {
	if len(a.opts.DataKey) == 0 {
		return path
	}
	exp := strconv.FormatInt(now.Add(dataURLTTL).Unix(), 10)
	return path + "?" + url.Values{"expires": {exp}, "sig": {a.dataSig(path, exp)}}.Encode()
}

func (a *API) dataSig(path, exp string) string {
	m := hmac.New(sha256.New, a.opts.DataKey)
	m.Write([]byte(path + "\n" + exp))
	return hex.EncodeToString(m.Sum(nil))
}

// checkData refuses a data endpoint request whose signature is missing,
// wrong or expired (with DataKey set).
func (a *API) checkData(r *http.Request) error {
	if len(a.opts.DataKey) == 0 || a.isPeer(r) {
		return nil
	}
	q := r.URL.Query()
	exp, sig := q.Get("expires"), q.Get("sig")
	at, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !hmac.Equal([]byte(sig), []byte(a.dataSig(r.URL.Path, exp))) {
		return ocierr.Denied.Withf("this data endpoint URL is not signed by the registry; GET the blob from the registry endpoint, which redirects here")
	}
	if time.Now().Unix() > at {
		return ocierr.Denied.Withf("this data endpoint URL expired; GET the blob from the registry endpoint again")
	}
	return nil
}
