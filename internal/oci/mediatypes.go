package oci

import (
	"mime"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Manifest media types a registry stores. Docker's are not in image-spec.
const (
	MediaTypeImageManifest  = v1.MediaTypeImageManifest
	MediaTypeImageIndex     = v1.MediaTypeImageIndex
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	// MediaTypeDockerSchema1 is refused: it is deprecated and unsigned
	// content cannot be verified.
	MediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// ManifestMediaTypes lists the manifest media types georeg stores.
var ManifestMediaTypes = []string{
	MediaTypeImageManifest, MediaTypeImageIndex, MediaTypeDockerManifest, MediaTypeDockerList,
}

// IsIndex reports whether mediaType is a list of manifests (OCI index or
// Docker manifest list).
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeImageIndex || mediaType == MediaTypeDockerList
}

// IsManifestMediaType reports whether mediaType is one georeg stores.
func IsManifestMediaType(mediaType string) bool {
	for _, m := range ManifestMediaTypes {
		if m == mediaType {
			return true
		}
	}
	return false
}

// BaseMediaType returns a Content-Type without parameters, or "" when it
// does not parse.
func BaseMediaType(contentType string) string {
	if contentType == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}
