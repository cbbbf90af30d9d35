package ociapi

import (
	"strings"
	"testing"

	"github.com/georeg/georeg/internal/oci"
)

// The seed corpora of these targets live in testdata/fuzz/<Target>/ and
// grow with whatever `make fuzz` finds.

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/_catalog", "/v2/a/b/blobs/sha256:abc", "/v2/a/blobs/uploads/",
		"/v2/a/blobs/uploads/eastus.00ff", "/v2/a/manifests/latest", "/v2/a/tags/list", "/v2/a/referrers/sha256:0",
		"/v2/../x/manifests/a", "/v2/a//b/tags/list", "/v2/blobs/blobs/blobs/x", "/v3/a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, err := ParseRoute(path)
		if err != nil {
			return
		}
		if r.Kind == KindBase || r.Kind == KindCatalog {
			return
		}
		if oci.ValidateRepository(r.Repo) != nil {
			t.Fatalf("%q parsed to invalid repository %q", path, r.Repo)
		}
		if r.Kind == KindUpload && (strings.Contains(r.Ref, "/") || strings.Contains(r.Ref, "..")) {
			t.Fatalf("%q parsed to unsafe upload id %q", path, r.Ref)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=5-", "bytes=-5", "bytes=1-2,4-5", "bytes=9-1", "items=0-1", "bytes=-0", "bytes=99999999999999999999-"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		if size < 0 {
			return
		}
		r, ok, err := parseRange(header, size)
		if err != nil || !ok {
			return
		}
		if r.Start < 0 || r.End >= size || r.Start > r.End {
			t.Fatalf("parseRange(%q, %d) = %+v outside the blob", header, size, r)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"0-0", "0-1023", "bytes 0-9/10", "5-4", "-1-2", "1-", "", "bytes */10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r, err := parseContentRange(header)
		if err != nil {
			return
		}
		if r.Start < 0 || r.End < r.Start || r.length() <= 0 {
			t.Fatalf("parseContentRange(%q) = %+v", header, r)
		}
	})
}
