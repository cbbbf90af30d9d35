// Package oci holds the wire vocabulary of OCI images and the Distribution
// API, without I/O: repository names, tags and digests as they appear in
// /v2 paths, manifest media types, and manifests parsed into the
// descriptors a registry must check (blobs, child manifests, subject).
//
// Every parser here is total: any input returns a value or an error, never
// a panic, and each one has a fuzz target.
package oci
