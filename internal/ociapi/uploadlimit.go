package ociapi

import (
	"net/http"
	"sync"
	"time"

	"github.com/georeg/georeg/internal/ocierr"
	"github.com/georeg/georeg/internal/webhook"
)

// Uploads in flight (requests carrying blob bytes: monolithic POSTs,
// PATCHes, closing PUTs) hold a buffer each (an S3 part, 16 MiB by
// default), so a node takes at most MaxUploads of them at once, and one
// authenticated user or token at most MaxUploadsPerClient; beyond,
// TOOMANYREQUESTS with Retry-After, before a byte is read. Anonymous
// uploads (auth off) count against the node's limit only: behind a front
// door every client has the door's address. Idle sessions cost nothing
// and are not counted.
const (
	DefaultMaxUploads          = 256
	DefaultMaxUploadsPerClient = 32
	uploadRetryAfter           = 2 * time.Second
)

// uploadSlots counts the uploads in flight, in all and per client.
type uploadSlots struct {
	max, perClient int

	mu        sync.Mutex
	total     int
	perHolder map[string]int
}

func newUploadSlots(max, perClient int) *uploadSlots {
	if max <= 0 {
		max = DefaultMaxUploads
	}
	if perClient <= 0 {
		perClient = DefaultMaxUploadsPerClient
	}
	return &uploadSlots{max: max, perClient: perClient, perHolder: map[string]int{}}
}

// take gives client ("" for anonymous) a slot, or says why not; release
// gives it back.
func (u *uploadSlots) take(client string) (release func(), err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.total >= u.max:
		e := ocierr.TooManyRequests.Withf("this node is taking %d uploads at once, its limit; retry shortly", u.total)
		e.RetryAfter = uploadRetryAfter
		return nil, e
	case client != "" && u.perHolder[client] >= u.perClient:
		e := ocierr.TooManyRequests.Withf("%s has %d uploads in flight on this node, the limit per client; retry when one ends", client, u.perHolder[client])
		e.RetryAfter = uploadRetryAfter
		return nil, e
	}
	u.total++
	u.perHolder[client]++
	var once sync.Once
	return func() {
		once.Do(func() {
			u.mu.Lock()
			defer u.mu.Unlock()
			u.total--
			if u.perHolder[client]--; u.perHolder[client] <= 0 {
				delete(u.perHolder, client)
			}
		})
	}, nil
}

// uploadClient names who an upload counts against: the authenticated
// user or token ("" when anonymous).
func uploadClient(r *http.Request) string {
	if actor := webhook.RequestFrom(r.Context()).Actor; actor != "" {
		return actor
	}
	return ""
}

// carriesBlob reports a request that streams blob bytes into the region.
func carriesBlob(kind Kind, r *http.Request) bool {
	switch {
	case kind == KindUploads && r.Method == http.MethodPost:
		return r.ContentLength > 0 || len(r.TransferEncoding) > 0
	case kind == KindUpload:
		return r.Method == http.MethodPatch || (r.Method == http.MethodPut && (r.ContentLength > 0 || len(r.TransferEncoding) > 0))
	}
	return false
}
