package ociapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/georeg/georeg/internal/ociapi"
	"github.com/georeg/georeg/internal/region"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("database/sql.(*DB).connectionOpener"))
}

// testRegion is a region node on a loopback listener over a temp dir.
type testRegion struct {
	t      *testing.T
	url    string
	dir    string
	region *region.Region
}

func newTestRegion(t *testing.T, mutate ...func(*region.Config)) *testRegion {
	t.Helper()
	dir := t.TempDir()
	cfg := region.Config{Name: "eastus", DataDir: dir, MaxManifestSize: 64 << 10}
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := region.Open(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ociapi.New(r, log, ociapi.Options{}).Handler(nil))
	t.Cleanup(func() { srv.Close(); r.Close() })
	return &testRegion{t: t, url: srv.URL, dir: dir, region: r}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (tr *testRegion) do(method, path string, header map[string]string, body []byte) response {
	tr.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(tr.t.Context(), method, tr.url+path, rd)
	if err != nil {
		tr.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tr.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// code returns the first OCI error code of a response body.
func (r response) code() string {
	var env struct {
		Errors []struct{ Code, Message string }
	}
	if json.Unmarshal(r.body, &env) != nil || len(env.Errors) == 0 {
		return ""
	}
	return env.Errors[0].Code
}

// snapshot is everything a request could change: the metadata row counts
// and every file under the content store.
func (tr *testRegion) snapshot() string {
	tr.t.Helper()
	counts, err := tr.region.Counts(tr.t.Context())
	if err != nil {
		tr.t.Fatal(err)
	}
	var files []string
	_ = filepath.WalkDir(filepath.Join(tr.dir, "content"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".ready") {
			fi, _ := d.Info()
			files = append(files, fmt.Sprintf("%s:%d", strings.TrimPrefix(p, tr.dir), fi.Size()))
		}
		return nil
	})
	slices.Sort(files)
	return fmt.Sprint(counts, files)
}

// pushBlob uploads data monolithically and returns its digest.
func (tr *testRegion) pushBlob(repo string, data []byte) digest.Digest {
	tr.t.Helper()
	d := digest.FromBytes(data)
	r := tr.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), nil, data)
	if r.status != http.StatusCreated {
		tr.t.Fatalf("push blob: %d %s", r.status, r.body)
	}
	return d
}

// image pushes a config and one layer and returns an OCI manifest for them.
func (tr *testRegion) image(repo, seed string) []byte {
	tr.t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","seed":"` + seed + `"}`)
	layer := []byte("layer bytes of " + seed)
	cd, ld := tr.pushBlob(repo, cfg), tr.pushBlob(repo, layer)
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		cd, len(cfg), ld, len(layer)))
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func ct(mt string) map[string]string { return map[string]string{"Content-Type": mt} }

func (tr *testRegion) putManifest(repo, ref string, m []byte) digest.Digest {
	tr.t.Helper()
	r := tr.do("PUT", "/v2/"+repo+"/manifests/"+ref, ct(ociManifest), m)
	if r.status != http.StatusCreated {
		tr.t.Fatalf("put manifest: %d %s", r.status, r.body)
	}
	return digest.Digest(r.header.Get("Docker-Content-Digest"))
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	tr := newTestRegion(t)
	m := tr.image("app", "base")
	tr.putManifest("app", "v1", m)
	// An open upload session to aim chunk mistakes at.
	start := tr.do("POST", "/v2/app/blobs/uploads/", nil, nil)
	loc := start.header.Get("Location")
	if tr.do("PATCH", loc, map[string]string{"Content-Range": "0-3"}, []byte("abcd")).status != http.StatusAccepted {
		t.Fatal("first chunk refused")
	}
	bigManifest := append([]byte(`{"schemaVersion":2,"annotations":{"x":"`), bytes.Repeat([]byte("a"), 70<<10)...)
	bigManifest = append(bigManifest, []byte(`"}}`)...)
	missingBlob := strings.Replace(string(m), digest.FromBytes([]byte("layer bytes of base")).String(), digest.FromString("nope").String(), 1)
	wrongSize := strings.Replace(string(m), `"size":19}`, `"size":20}`, 1)
	zero := "sha256:" + strings.Repeat("0", 64)

	cases := []struct {
		name, method, path string
		header             map[string]string
		body               []byte
		status             int
		code               string
	}{
		{"a repository name with ../ is NAME_INVALID", "GET", "/v2/../etc/manifests/latest", nil, nil, 400, "NAME_INVALID"},
		{"an upper-case repository name is NAME_INVALID", "GET", "/v2/App/tags/list", nil, nil, 400, "NAME_INVALID"},
		{"a name with a double slash is NAME_INVALID", "GET", "/v2/a//b/tags/list", nil, nil, 400, "NAME_INVALID"},
		{"a name ending in a separator is NAME_INVALID", "PUT", "/v2/app-/manifests/v1", ct(ociManifest), m, 400, "NAME_INVALID"},
		{"a name of 256 characters is NAME_INVALID", "GET", "/v2/" + strings.Repeat("a", 256) + "/tags/list", nil, nil, 400, "NAME_INVALID"},
		{"a path that is no endpoint is NAME_UNKNOWN", "GET", "/v2/app/nothing/here", nil, nil, 404, "NAME_UNKNOWN"},
		{"a malformed blob digest is DIGEST_INVALID", "GET", "/v2/app/blobs/sha256:xyz", nil, nil, 400, "DIGEST_INVALID"},
		{"an unknown digest algorithm is DIGEST_INVALID", "GET", "/v2/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", nil, nil, 400, "DIGEST_INVALID"},
		{"an unknown blob is BLOB_UNKNOWN", "GET", "/v2/app/blobs/" + zero, nil, nil, 404, "BLOB_UNKNOWN"},
		{"deleting an unknown blob is BLOB_UNKNOWN", "DELETE", "/v2/app/blobs/" + zero, nil, nil, 404, "BLOB_UNKNOWN"},
		{"a manifest digest that is malformed is DIGEST_INVALID", "GET", "/v2/app/manifests/sha256:totallywrong", nil, nil, 400, "DIGEST_INVALID"},
		{"a malformed tag is MANIFEST_UNKNOWN", "GET", "/v2/app/manifests/.INVALID", nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"an unknown tag is MANIFEST_UNKNOWN", "GET", "/v2/app/manifests/nope", nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"tags of an unknown repository are NAME_UNKNOWN", "GET", "/v2/ghost/tags/list", nil, nil, 404, "NAME_UNKNOWN"},
		{"a negative n is refused", "GET", "/v2/app/tags/list?n=-1", nil, nil, 400, "PAGINATION_NUMBER_INVALID"},
		{"a manifest that is not JSON is MANIFEST_INVALID", "PUT", "/v2/app/manifests/v2", ct(ociManifest), []byte("{not json"), 400, "MANIFEST_INVALID"},
		{"a manifest whose Content-Type disagrees is MANIFEST_INVALID", "PUT", "/v2/app/manifests/v2", ct("application/vnd.oci.image.index.v1+json"), m, 400, "MANIFEST_INVALID"},
		{"a manifest sent as application/json is MANIFEST_INVALID", "PUT", "/v2/app/manifests/v2", ct("application/json"), m, 400, "MANIFEST_INVALID"},
		{"schemaVersion 1 is MANIFEST_INVALID", "PUT", "/v2/app/manifests/v2", ct(ociManifest), []byte(`{"schemaVersion":1}`), 400, "MANIFEST_INVALID"},
		{"a manifest over the size limit is 413", "PUT", "/v2/app/manifests/v2", ct(ociManifest), bigManifest, 413, "MANIFEST_TOO_LARGE"},
		{"a manifest naming a missing blob is MANIFEST_BLOB_UNKNOWN", "PUT", "/v2/app/manifests/v2", ct(ociManifest), []byte(missingBlob), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"a descriptor with the wrong size is MANIFEST_INVALID", "PUT", "/v2/app/manifests/v2", ct(ociManifest), []byte(wrongSize), 400, "MANIFEST_INVALID"},
		{"a manifest under another digest is DIGEST_INVALID", "PUT", "/v2/app/manifests/" + zero, ct(ociManifest), m, 400, "DIGEST_INVALID"},
		{"a manifest PUT with a malformed tag is MANIFEST_INVALID", "PUT", "/v2/app/manifests/-bad", ct(ociManifest), m, 400, "MANIFEST_INVALID"},
		{"an index naming a missing child is MANIFEST_BLOB_UNKNOWN", "PUT", "/v2/app/manifests/idx", ct("application/vnd.oci.image.index.v1+json"),
			[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"` + ociManifest + `","digest":"` + zero + `","size":1}]}`), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"deleting an unknown manifest is MANIFEST_UNKNOWN", "DELETE", "/v2/app/manifests/" + zero, nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"deleting an unknown tag is MANIFEST_UNKNOWN", "DELETE", "/v2/app/manifests/nope", nil, nil, 404, "MANIFEST_UNKNOWN"},
		{"a monolithic upload whose bytes do not match is DIGEST_INVALID", "POST", "/v2/app/blobs/uploads/?digest=" + zero, nil, []byte("hello"), 400, "DIGEST_INVALID"},
		{"a monolithic upload with a malformed digest is DIGEST_INVALID", "POST", "/v2/app/blobs/uploads/?digest=sha256:zz", nil, []byte("hello"), 400, "DIGEST_INVALID"},
		{"a mount from a malformed repository is NAME_INVALID", "POST", "/v2/app/blobs/uploads/?mount=" + zero + "&from=Bad..Name", nil, nil, 400, "NAME_INVALID"},
		{"an unknown upload id is BLOB_UPLOAD_UNKNOWN", "PATCH", "/v2/app/blobs/uploads/eastus.0000", nil, []byte("x"), 404, "BLOB_UPLOAD_UNKNOWN"},
		{"a malformed upload id is NAME_UNKNOWN", "PATCH", "/v2/app/blobs/uploads/..%2F..%2Fx", nil, []byte("x"), 404, "NAME_UNKNOWN"},
		{"an upload addressed through another repository is BLOB_UPLOAD_UNKNOWN", "GET", strings.Replace(loc, "/app/", "/other/", 1), nil, nil, 404, "BLOB_UPLOAD_UNKNOWN"},
		{"a chunk out of order is 416", "PATCH", loc, map[string]string{"Content-Range": "10-13"}, []byte("efgh"), 416, "RANGE_INVALID"},
		{"a chunk resent is 416", "PATCH", loc, map[string]string{"Content-Range": "0-3"}, []byte("abcd"), 416, "RANGE_INVALID"},
		{"a malformed Content-Range is BLOB_UPLOAD_INVALID", "PATCH", loc, map[string]string{"Content-Range": "4-x"}, []byte("efgh"), 400, "BLOB_UPLOAD_INVALID"},
		{"a Content-Range that disagrees with the body is SIZE_INVALID", "PATCH", loc, map[string]string{"Content-Range": "4-9"}, []byte("efgh"), 400, "SIZE_INVALID"},
		{"a closing PUT without a digest is DIGEST_INVALID", "PUT", loc, nil, nil, 400, "DIGEST_INVALID"},
		{"a blob range past the end is 416", "GET", "/v2/app/blobs/" + digest.FromBytes([]byte("layer bytes of base")).String(), map[string]string{"Range": "bytes=100-200"}, nil, 416, "RANGE_INVALID"},
		{"a malformed range is 416", "GET", "/v2/app/blobs/" + digest.FromBytes([]byte("layer bytes of base")).String(), map[string]string{"Range": "bytes=x-1"}, nil, 416, "RANGE_INVALID"},
		{"an unsupported method is UNSUPPORTED", "POST", "/v2/app/manifests/v1", nil, nil, 405, "UNSUPPORTED"},
		{"a referrers digest that is malformed is DIGEST_INVALID", "GET", "/v2/app/referrers/sha256:nope", nil, nil, 400, "DIGEST_INVALID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := tr.snapshot()
			r := tr.do(c.method, c.path, c.header, c.body)
			if r.status != c.status || r.code() != c.code {
				t.Fatalf("%s %s: got %d %s, want %d %s: %s", c.method, c.path, r.status, r.code(), c.status, c.code, r.body)
			}
			if ctype := r.header.Get("Content-Type"); ctype != "application/json" {
				t.Errorf("error Content-Type %q, want application/json", ctype)
			}
			if after := tr.snapshot(); after != before {
				t.Fatalf("store changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	t.Run("the open upload still accepts its next chunk after every mistake", func(t *testing.T) {
		r := tr.do("PATCH", loc, map[string]string{"Content-Range": "4-7"}, []byte("efgh"))
		if r.status != http.StatusAccepted || r.header.Get("Range") != "0-7" {
			t.Fatalf("got %d Range %q", r.status, r.header.Get("Range"))
		}
	})
}
