package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/georeg/georeg/internal/config"
	contents3 "github.com/georeg/georeg/internal/content/s3"
	"github.com/georeg/georeg/internal/feed"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/node"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"))
}

func startNode(t *testing.T, secret string) string {
	t.Helper()
	cfg := config.Default()
	cfg.Region.DataDir = t.TempDir()
	cfg.Replication.Secret = secret
	n, err := node.Open(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n.Handler())
	t.Cleanup(func() { srv.Close(); n.Region.Close() })
	return srv.URL
}

func send(t *testing.T, method, url, contentType string, body []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d", method, url, resp.StatusCode)
	}
}

// push stores a config blob, a layer and a manifest tagged tag.
func push(t *testing.T, base, repo, tag string) digest.Digest {
	t.Helper()
	cfg, layer := []byte(`{"tag":"`+tag+`"}`), []byte("layer "+tag)
	for _, b := range [][]byte{cfg, layer} {
		send(t, "POST", base+"/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), "", b)
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(cfg), len(cfg), digest.FromBytes(layer), len(layer)))
	send(t, "PUT", base+"/v2/"+repo+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", m)
	return digest.FromBytes(m)
}

func TestFeedRecordsEveryOriginatedChangeInOrder(t *testing.T) {
	base := startNode(t, "s3cr3t")
	// As another node of eastus: the node has no peers, so no other
	// region is a member.
	c := feed.NewClient(base, "eastus", peerauth.NewSigner(peerauth.FromSecret("s3cr3t"), "eastus", http.DefaultClient), http.DefaultClient, 10*time.Second)
	md := push(t, base, "app", "v1")

	page, err := c.Fetch(t.Context(), 0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range page.Records {
		kinds = append(kinds, r.Kind)
	}
	if fmt.Sprint(kinds) != "[blob blob manifest tag]" || page.Head != 4 || page.Region != "eastus" {
		t.Fatalf("feed %v head %d region %s", kinds, page.Head, page.Region)
	}
	if page.Records[2].Digest != md || page.Records[3].Tag != "v1" {
		t.Fatalf("manifest record %+v, tag record %+v", page.Records[2], page.Records[3])
	}

	t.Run("a long-poll returns the next change when it commits", func(t *testing.T) {
		got := make(chan *feed.Page, 1)
		go func() {
			p, err := c.Fetch(t.Context(), page.Head, 100, 30*time.Second)
			if err != nil {
				t.Error(err)
			}
			got <- p
		}()
		send(t, "DELETE", base+"/v2/app/manifests/v1", "", nil)
		p := <-got
		if p == nil || len(p.Records) != 1 || p.Records[0].Kind != meta.KindTagDelete || p.Records[0].Seq != 5 {
			t.Fatalf("long-poll got %+v", p)
		}
	})
	t.Run("the feed refuses a missing, wrong or foreign token", func(t *testing.T) {
		now := time.Now()
		for name, token := range map[string]string{"none": "", "the secret": "s3cr3t",
			"another secret's": peerauth.FromSecret("wrong").Token("eastus", "eastus", now),
			"a non-member's":   peerauth.FromSecret("s3cr3t").Token("westeurope", "eastus", now),
			"another region's": peerauth.FromSecret("s3cr3t").Token("eastus", "westeurope", now),
			"the front door's": peerauth.FromSecret("s3cr3t").ProbeToken(now),
			"an expired":       peerauth.FromSecret("s3cr3t").Token("eastus", "eastus", now.Add(-peerauth.TokenTTL-time.Second)),
			"a far-future":     peerauth.FromSecret("s3cr3t").Token("eastus", "eastus", now.Add(time.Hour)),
		} {
			req, _ := http.NewRequest(http.MethodGet, base+feed.Path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s token: %d, want 401", name, resp.StatusCode)
			}
		}
	})
}

func TestNoSecretServesNoFeed(t *testing.T) {
	base := startNode(t, "")
	resp, err := http.Get(base + feed.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("feed without a secret: %d", resp.StatusCode)
	}
}

// TestDataEndpointRedirectsBlobGets: with data endpoints on, a client's
// blob GET is answered 307 to the region's data endpoint, which serves the
// bytes (so a front door never carries them); a peer still gets the bytes
// directly; the data endpoint serves nothing but blobs.
func TestDataEndpointRedirectsBlobGets(t *testing.T) {
	cfg := config.Default()
	cfg.Region.DataDir = t.TempDir()
	cfg.Replication.Secret = "s3cr3t"
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.DataEndpoints, cfg.HTTP.DataListen = true, dl.Addr().String()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetDataListener(dl)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-served })
	base := "http://" + l.Addr().String()
	blob := bytes.Repeat([]byte("data endpoint;"), 10_000)
	d := digest.FromBytes(blob)
	send(t, "POST", base+"/v2/data/app/blobs/uploads/?digest="+d.String(), "", blob)

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(base + "/v2/data/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "http://" + dl.Addr().String() + "/v2/data/app/blobs/" + d.String()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != want || len(body) != 0 {
		t.Fatalf("client GET: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Location"), len(body))
	}
	resp, err = http.Get(base + "/v2/data/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, blob) {
		t.Fatalf("followed: %d, %d bytes", resp.StatusCode, len(body))
	}
	req, _ := http.NewRequest("GET", base+"/v2/data/app/blobs/"+d.String(), nil)
	req.Header.Set("Authorization", "Bearer "+peerauth.FromSecret("s3cr3t").Token("eastus", "eastus", time.Now())) // another node of eastus
	if resp, err = noFollow.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("peer GET: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, err = http.Get("http://" + dl.Addr().String() + "/v2/data/app/tags/list"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("data endpoint beyond blobs: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestWithAuthTheDataEndpointServesOnlySignedURLs: with auth on, the API
// checks the client's token and redirects to a signed data URL; the data
// endpoint refuses an unsigned, tampered or expired one.
func TestWithAuthTheDataEndpointServesOnlySignedURLs(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "admin-password")
	if err := os.WriteFile(pw, []byte("admin-password-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Region.DataDir = filepath.Join(dir, "data")
	cfg.Replication.Secret = "s3cr3t"
	cfg.Auth.Enabled, cfg.Auth.AdminPasswordFile = true, pw
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.DataEndpoints, cfg.HTTP.DataListen = true, dl.Addr().String()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetDataListener(dl)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-served })
	base := "http://" + l.Addr().String()
	token := func() string {
		req, _ := http.NewRequest("GET", base+"/oauth2/token?service=georeg&scope=repository:data/app:pull,push", nil)
		req.SetBasicAuth("admin", "admin-password-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans struct{ Token string }
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&ans) != nil {
			t.Fatalf("token: %d", resp.StatusCode)
		}
		return ans.Token
	}()
	blob := bytes.Repeat([]byte("signed data;"), 10_000)
	d := digest.FromBytes(blob)
	req, _ := http.NewRequest("POST", base+"/v2/data/app/blobs/uploads/?digest="+d.String(), bytes.NewReader(blob))
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("push: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ = http.NewRequest("GET", base+"/v2/data/app/blobs/"+d.String(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := noFollow.Do(req)
	if err != nil || resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("GET with a token: %v %v", resp, err)
	}
	resp.Body.Close()
	signed := resp.Header.Get("Location")
	get := func(u string) int {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && !bytes.Equal(b, blob) {
			t.Fatalf("the data endpoint served other bytes")
		}
		return resp.StatusCode
	}
	if code := get(signed); code != 200 {
		t.Fatalf("signed URL: %d", code)
	}
	unsigned := "http://" + dl.Addr().String() + "/v2/data/app/blobs/" + d.String()
	tampered := strings.Replace(signed, "expires=", "expires=9", 1)
	for name, u := range map[string]string{"unsigned": unsigned, "tampered": tampered, "expired": unsigned + "?expires=1&sig=00"} {
		if code := get(u); code != 403 {
			t.Errorf("%s data URL: %d, want 403", name, code)
		}
	}
}

// TestAnS3RegionRedirectsBlobGETsToPresignedURLs: with content on S3 and
// redirect on, a client's blob GET answers 307 to a presigned URL that
// serves the blob; a peer's GET gets the bytes from the node.
func TestAnS3RegionRedirectsBlobGETsToPresignedURLs(t *testing.T) {
	bucket := storetest.S3Bucket(t)
	cfg := config.Default()
	cfg.Region.DataDir = t.TempDir()
	cfg.Region.Metadata = region.MetadataConfig{Driver: "postgres", DSN: storetest.Postgres(t)}
	cfg.Region.Content = region.ContentConfig{Driver: "s3", S3: contents3.Config{Endpoint: bucket.Endpoint, Bucket: bucket.Bucket,
		AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey, Redirect: true}}
	cfg.Replication.Secret = "s3cr3t"
	n, err := node.Open(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n.Handler())
	t.Cleanup(func() { srv.Close(); n.Region.Close() })
	blob := []byte("bytes from the object store")
	d := digest.FromBytes(blob)
	send(t, "POST", srv.URL+"/v2/app/blobs/uploads/?digest="+d.String(), "", blob)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(srv.URL + "/v2/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, bucket.Endpoint) || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("client GET: %d, Location %q", resp.StatusCode, loc)
	}
	resp, err = http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, blob) {
		t.Fatalf("the presigned URL: %d %q", resp.StatusCode, got)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/app/blobs/"+d.String(), nil)
	req.Header.Set("Authorization", "Bearer "+peerauth.FromSecret("s3cr3t").Token("eastus", "eastus", time.Now())) // another node of eastus
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, blob) {
		t.Fatalf("a peer's GET: %d (peers get the bytes from the node)", resp.StatusCode)
	}
}
