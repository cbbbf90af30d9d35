package up_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/up"
)

// corruptingLink is a reverse proxy between two regions that, while on,
// flips one byte in the middle of every blob body it carries: a peer (or
// a path to it) that serves wrong bytes.
type corruptingLink struct {
	on       atomic.Bool
	corrupts atomic.Int32 // bodies changed
}

func (c *corruptingLink) start(t *testing.T, target string) string {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !c.on.Load() || resp.StatusCode/100 != 2 || !strings.Contains(resp.Request.URL.Path, "/blobs/sha256:") {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if len(body) > 0 {
			body[len(body)/2] ^= 0xff
			c.corrupts.Add(1)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestInvariant1WrongBytesFromAPeerAreNeverServedNorStored: westeurope
// reaches eastus through a link that corrupts blob bodies, and cannot
// reach southeastasia. A client's blob GET there, read through from
// eastus, never ends as a whole 200 body of wrong bytes (the connection
// breaks before the last byte); replication stores nothing while the
// bytes are wrong (fetch failures are counted); once the link is honest
// the image arrives whole.
func TestInvariant1WrongBytesFromAPeerAreNeverServedNorStored(t *testing.T) {
	bad := &corruptingLink{}
	bad.on.Store(true)
	cut := &faultyLink{}
	cut.set(func(*http.Request) bool { return true })
	cfg := up.Config{DataDir: t.TempDir(), Regions: threeRegions()}
	cfg.Link = func(from, to, u string) (string, error) {
		switch {
		case from == "westeurope" && to == "eastus":
			return bad.start(t, u), nil
		case from == "westeurope" && to == "southeastasia":
			return cut.start(t, u), nil
		}
		return u, nil
	}
	reg := runRegistry(t, cfg)
	east, west := reg.ByName["eastus"].URL, reg.ByName["westeurope"].URL

	img := push(t, east, "verify/app", "v1", "verified", 300_000)
	layer := img.blobs[1]
	for i := range 5 {
		resp, err := http.Get(west + "/v2/verify/app/blobs/" + layer.String())
		if err != nil {
			continue // refused outright: nothing served
		}
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && rerr == nil && digest.FromBytes(body) != layer {
			t.Fatalf("read-through %d: westeurope served %d wrong bytes for %s as a complete 200", i, len(body), layer)
		}
		if resp.StatusCode == 200 && rerr == nil {
			t.Fatalf("read-through %d: a whole, right body came through a link that corrupts every blob", i)
		}
	}
	// Replication tries too, and fails: the negative check below follows
	// the failures it would have been wrong to ignore.
	eventually(t, 30*time.Second, func() error {
		if n := metric(t, west, "georeg_replication_fetch_failures_total", map[string]string{"peer": "eastus"}); n == 0 {
			return fmt.Errorf("no fetch from eastus has failed yet (%d bodies corrupted)", bad.corrupts.Load())
		}
		return nil
	})
	if code, body := asPeerWith(t, reg.Secret, "GET", west+"/v2/verify/app/blobs/"+layer.String()); code == 200 {
		t.Fatalf("westeurope stored the blob from a link that corrupts it (%d bytes, %s)", len(body), digest.FromBytes(body))
	}
	bad.on.Store(false)
	eventually(t, 60*time.Second, func() error { return holdsImage(t, reg, west, "verify/app", "v1", img) })
	if err := pullable(t, west, "verify/app", "v1", img); err != nil {
		t.Fatal(err)
	}
}
