// Package ociapi serves the OCI Distribution API v1.1 over HTTP:
// https://github.com/opencontainers/distribution-spec/blob/v1.1.1/spec.md
//
// Every /v2 path is parsed once by ParseRoute into a typed Route; Handler
// lists every route in one switch. Handlers are short: they parse and check
// the request, call the region package, and write headers. They return an
// error, and one function writes it as the OCI envelope with the status its
// code is bound to; an error without a code is 500 UNKNOWN, logged once
// with the request id.
package ociapi
