package oci

import (
	"encoding/json"
	"testing"
)

func FuzzParseManifest(f *testing.F) {
	seeds := []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}`,
		`{"schemaVersion":1}`, `[]`, `{"schemaVersion":2,"config":{"digest":"x"}}`, `null`,
	}
	for _, s := range seeds {
		f.Add("application/vnd.oci.image.manifest.v1+json", []byte(s))
		f.Add("", []byte(s))
	}
	f.Fuzz(func(t *testing.T, contentType string, payload []byte) {
		m, err := ParseManifest(contentType, payload)
		if err != nil {
			return
		}
		if !IsManifestMediaType(m.MediaType) {
			t.Fatalf("accepted media type %q", m.MediaType)
		}
		for _, d := range append(m.Blobs(), m.Manifests...) {
			if d.Digest.Validate() != nil || d.Size < 0 {
				t.Fatalf("accepted bad descriptor %+v", d)
			}
		}
		if !json.Valid(payload) {
			t.Fatal("accepted invalid JSON")
		}
	})
}

func FuzzValidateRepository(f *testing.F) {
	for _, s := range []string{"a", "a/b", "a-b.c_d__e", "../x", "A", "a//b", "a:5000/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateRepository(name) != nil {
			return
		}
		for _, bad := range []string{"..", "//", ":", "\\", " "} {
			if contains(name, bad) {
				t.Fatalf("accepted %q containing %q", name, bad)
			}
		}
	})
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
