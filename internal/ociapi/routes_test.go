package ociapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestEveryRoute(t *testing.T) {
	tr := newTestRegion(t)
	m := tr.image("app", "one")
	md := tr.putManifest("app", "v1", m)

	t.Run("the base endpoint answers 200 with the API version header", func(t *testing.T) {
		r := tr.do("GET", "/v2/", nil, nil)
		if r.status != 200 || r.header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
			t.Fatalf("got %d %v", r.status, r.header)
		}
	})
	t.Run("a manifest GET by tag returns the bytes, media type and digest", func(t *testing.T) {
		r := tr.do("GET", "/v2/app/manifests/v1", map[string]string{"Accept": ociManifest}, nil)
		if r.status != 200 || !bytes.Equal(r.body, m) || r.header.Get("Content-Type") != ociManifest ||
			r.header.Get("Docker-Content-Digest") != md.String() {
			t.Fatalf("got %d %v", r.status, r.header)
		}
	})
	t.Run("a manifest HEAD by digest has headers and no body", func(t *testing.T) {
		r := tr.do("HEAD", "/v2/app/manifests/"+md.String(), nil, nil)
		if r.status != 200 || len(r.body) != 0 || r.header.Get("Content-Length") != fmt.Sprint(len(m)) {
			t.Fatalf("got %d %v", r.status, r.header)
		}
	})
	t.Run("a tag GET whose Accept lists only other manifest types is MANIFEST_UNKNOWN", func(t *testing.T) {
		r := tr.do("GET", "/v2/app/manifests/v1", map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json"}, nil)
		if r.status != 404 || r.code() != "MANIFEST_UNKNOWN" {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	layer := digest.FromBytes([]byte("layer bytes of one"))
	t.Run("a blob GET with a Range returns 206 and that slice", func(t *testing.T) {
		r := tr.do("GET", "/v2/app/blobs/"+layer.String(), map[string]string{"Range": "bytes=6-10"}, nil)
		if r.status != 206 || string(r.body) != "bytes" || r.header.Get("Content-Range") != "bytes 6-10/18" {
			t.Fatalf("got %d %q %v", r.status, r.body, r.header)
		}
	})
	t.Run("a blob HEAD gives its size and digest", func(t *testing.T) {
		r := tr.do("HEAD", "/v2/app/blobs/"+layer.String(), nil, nil)
		if r.status != 200 || r.header.Get("Content-Length") != "18" || r.header.Get("Docker-Content-Digest") != layer.String() {
			t.Fatalf("got %d %v", r.status, r.header)
		}
	})
	t.Run("a chunked upload: POST, PATCH twice, status, PUT with a last chunk", func(t *testing.T) {
		data := []byte("0123456789abcdef")
		d := digest.FromBytes(data)
		loc := tr.do("POST", "/v2/app/blobs/uploads/", nil, nil).header.Get("Location")
		if r := tr.do("PATCH", loc, map[string]string{"Content-Range": "0-5", "Content-Type": "application/octet-stream"}, data[:6]); r.status != 202 || r.header.Get("Range") != "0-5" {
			t.Fatalf("chunk 1: %d %v %s", r.status, r.header, r.body)
		}
		if r := tr.do("PATCH", loc, nil, data[6:12]); r.status != 202 || r.header.Get("Range") != "0-11" {
			t.Fatalf("streamed chunk 2: %d %v", r.status, r.header)
		}
		if r := tr.do("GET", loc, nil, nil); r.status != 204 || r.header.Get("Range") != "0-11" {
			t.Fatalf("status: %d %v", r.status, r.header)
		}
		r := tr.do("PUT", loc+"?digest="+d.String(), map[string]string{"Content-Range": "12-15"}, data[12:])
		if r.status != 201 || r.header.Get("Location") != "/v2/app/blobs/"+d.String() {
			t.Fatalf("close: %d %v %s", r.status, r.header, r.body)
		}
		if got := tr.do("GET", "/v2/app/blobs/"+d.String(), nil, nil); !bytes.Equal(got.body, data) {
			t.Fatalf("read back %q", got.body)
		}
		if r := tr.do("GET", loc, nil, nil); r.status != 404 || r.code() != "BLOB_UPLOAD_UNKNOWN" {
			t.Fatalf("finished session still open: %d", r.status)
		}
	})
	t.Run("a streamed upload with chunked transfer encoding", func(t *testing.T) {
		data := bytes.Repeat([]byte("stream"), 100_000)
		d := digest.FromBytes(data)
		loc := tr.do("POST", "/v2/app/blobs/uploads/", nil, nil).header.Get("Location")
		req, _ := http.NewRequestWithContext(t.Context(), "PATCH", tr.url+loc, io.MultiReader(bytes.NewReader(data))) // unknown length: chunked
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("patch: %v %v", err, resp)
		}
		resp.Body.Close()
		if resp.Header.Get("Range") != fmt.Sprintf("0-%d", len(data)-1) {
			t.Fatalf("Range %q", resp.Header.Get("Range"))
		}
		if r := tr.do("PUT", loc+"?digest="+d.String(), nil, nil); r.status != 201 {
			t.Fatalf("close: %d %s", r.status, r.body)
		}
	})
	t.Run("a cancelled upload is gone", func(t *testing.T) {
		loc := tr.do("POST", "/v2/app/blobs/uploads/", nil, nil).header.Get("Location")
		tr.do("PATCH", loc, nil, []byte("partial"))
		if r := tr.do("DELETE", loc, nil, nil); r.status != 204 {
			t.Fatalf("delete: %d", r.status)
		}
		if r := tr.do("GET", loc, nil, nil); r.status != 404 {
			t.Fatalf("after delete: %d", r.status)
		}
	})
	t.Run("a mount from a repository holding the blob is 201, else a new session 202", func(t *testing.T) {
		r := tr.do("POST", "/v2/copy/blobs/uploads/?mount="+layer.String()+"&from=app", nil, nil)
		if r.status != 201 || r.header.Get("Location") != "/v2/copy/blobs/"+layer.String() {
			t.Fatalf("mount: %d %v", r.status, r.header)
		}
		r = tr.do("POST", "/v2/copy/blobs/uploads/?mount="+layer.String()+"&from=ghost", nil, nil)
		if r.status != 202 || !strings.HasPrefix(r.header.Get("Location"), "/v2/copy/blobs/uploads/") {
			t.Fatalf("fallback: %d %v", r.status, r.header)
		}
	})
	t.Run("sha512 blobs and manifests", func(t *testing.T) {
		data := []byte("sha512 content")
		d := digest.SHA512.FromBytes(data)
		loc := tr.do("POST", "/v2/app/blobs/uploads/", nil, nil).header.Get("Location")
		if r := tr.do("PUT", loc+"?digest="+d.String(), nil, data); r.status != 201 {
			t.Fatalf("chunked sha512: %d %s", r.status, r.body)
		}
		md512 := digest.SHA512.FromBytes(m)
		if r := tr.do("PUT", "/v2/app/manifests/"+md512.String(), ct(ociManifest), m); r.status != 201 || r.header.Get("Docker-Content-Digest") != md512.String() {
			t.Fatalf("manifest by sha512: %d %s", r.status, r.body)
		}
		if r := tr.do("GET", "/v2/app/manifests/"+md512.String(), nil, nil); r.status != 200 || !bytes.Equal(r.body, m) {
			t.Fatalf("get by sha512: %d", r.status)
		}
	})
	t.Run("an index, a Docker manifest list and a Docker schema2 manifest are stored as pushed", func(t *testing.T) {
		docker := strings.NewReplacer(ociManifest, "application/vnd.docker.distribution.manifest.v2+json",
			"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json",
			"application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar.gzip").Replace(string(m))
		dd := tr.do("PUT", "/v2/app/manifests/docker", ct("application/vnd.docker.distribution.manifest.v2+json"), []byte(docker))
		if dd.status != 201 {
			t.Fatalf("schema2: %d %s", dd.status, dd.body)
		}
		for _, mt := range []string{"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"} {
			idx := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}}]}`,
				mt, ociManifest, md, len(m))
			if r := tr.do("PUT", "/v2/app/manifests/list", ct(mt), []byte(idx)); r.status != 201 {
				t.Fatalf("%s: %d %s", mt, r.status, r.body)
			}
			if r := tr.do("GET", "/v2/app/manifests/list", map[string]string{"Accept": mt}, nil); r.header.Get("Content-Type") != mt {
				t.Fatalf("%s read back as %s", mt, r.header.Get("Content-Type"))
			}
		}
	})
	t.Run("referrers: OCI-Subject on push, artifactType filter, empty list for an unknown subject", func(t *testing.T) {
		for i, at := range []string{"application/vnd.example.sbom", "application/vnd.example.sig", "application/vnd.example.sbom"} {
			art := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":%q,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"subject":{"mediaType":%q,"digest":%q,"size":%d},"annotations":{"n":"%d"}}`,
				ociManifest, at, tr.pushBlob("app", []byte("{}")), ociManifest, md, len(m), i)
			r := tr.do("PUT", "/v2/app/manifests/"+digest.FromString(art).String(), ct(ociManifest), []byte(art))
			if r.status != 201 || r.header.Get("OCI-Subject") != md.String() {
				t.Fatalf("artifact %d: %d %v %s", i, r.status, r.header, r.body)
			}
		}
		var idx struct {
			Manifests []struct {
				ArtifactType string
				Annotations  map[string]string
			}
		}
		r := tr.do("GET", "/v2/app/referrers/"+md.String()+"?artifactType=application/vnd.example.sbom", nil, nil)
		_ = json.Unmarshal(r.body, &idx)
		if r.status != 200 || len(idx.Manifests) != 2 || r.header.Get("OCI-Filters-Applied") != "artifactType" ||
			r.header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" || idx.Manifests[0].Annotations["n"] == "" {
			t.Fatalf("filtered: %d %v %s", r.status, r.header, r.body)
		}
		r = tr.do("GET", "/v2/app/referrers/"+digest.FromString("nothing").String(), nil, nil)
		if r.status != 200 || !strings.Contains(string(r.body), `"manifests":[]`) {
			t.Fatalf("unknown subject: %d %s", r.status, r.body)
		}
	})
	t.Run("tags paginate with n, last and a Link header", func(t *testing.T) {
		for _, tag := range []string{"a", "b", "c", "d"} {
			tr.putManifest("paged", tag, tr.image("paged", tag))
		}
		r := tr.do("GET", "/v2/paged/tags/list?n=2", nil, nil)
		if string(r.body) != `{"name":"paged","tags":["a","b"]}` || r.header.Get("Link") != `</v2/paged/tags/list?last=b&n=2>; rel="next"` {
			t.Fatalf("page 1: %s %q", r.body, r.header.Get("Link"))
		}
		r = tr.do("GET", "/v2/paged/tags/list?n=2&last=b", nil, nil)
		if string(r.body) != `{"name":"paged","tags":["c","d"]}` || r.header.Get("Link") != "" {
			t.Fatalf("page 2: %s %q", r.body, r.header.Get("Link"))
		}
		if r = tr.do("GET", "/v2/paged/tags/list?n=0", nil, nil); string(r.body) != `{"name":"paged","tags":[]}` {
			t.Fatalf("n=0: %s", r.body)
		}
	})
	t.Run("the catalog paginates", func(t *testing.T) {
		r := tr.do("GET", "/v2/_catalog?n=1", nil, nil)
		if string(r.body) != `{"repositories":["app"]}` || !strings.Contains(r.header.Get("Link"), "last=app") {
			t.Fatalf("catalog: %s %q", r.body, r.header.Get("Link"))
		}
	})
	t.Run("deleting a tag leaves the manifest; deleting the manifest removes its tags", func(t *testing.T) {
		d := tr.putManifest("del", "t1", tr.image("del", "x"))
		tr.putManifest("del", "t2", tr.image("del", "x"))
		if r := tr.do("DELETE", "/v2/del/manifests/t1", nil, nil); r.status != 202 {
			t.Fatalf("delete tag: %d", r.status)
		}
		if r := tr.do("GET", "/v2/del/manifests/"+d.String(), nil, nil); r.status != 200 {
			t.Fatalf("manifest gone with its tag: %d", r.status)
		}
		if r := tr.do("DELETE", "/v2/del/manifests/"+d.String(), nil, nil); r.status != 202 {
			t.Fatalf("delete manifest: %d", r.status)
		}
		for _, p := range []string{"/v2/del/manifests/t2", "/v2/del/manifests/" + d.String()} {
			if r := tr.do("GET", p, nil, nil); r.status != 404 {
				t.Fatalf("%s after delete: %d", p, r.status)
			}
		}
		if r := tr.do("GET", "/v2/del/tags/list", nil, nil); string(r.body) != `{"name":"del","tags":[]}` {
			t.Fatalf("tags after delete: %s", r.body)
		}
	})
	t.Run("a deleted blob is unknown in its repository", func(t *testing.T) {
		d := tr.pushBlob("blobdel", []byte("to delete"))
		if r := tr.do("DELETE", "/v2/blobdel/blobs/"+d.String(), nil, nil); r.status != 202 {
			t.Fatalf("delete: %d", r.status)
		}
		if r := tr.do("HEAD", "/v2/blobdel/blobs/"+d.String(), nil, nil); r.status != 404 {
			t.Fatalf("after delete: %d", r.status)
		}
	})
	t.Run("health endpoints answer", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			if r := tr.do("GET", p, nil, nil); r.status != 200 {
				t.Fatalf("%s: %d %s", p, r.status, r.body)
			}
		}
	})
}
