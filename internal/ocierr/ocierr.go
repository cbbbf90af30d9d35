// Package ocierr holds the closed set of OCI Distribution error codes, each
// bound once to its HTTP status, and the JSON envelope in both directions.
//
// Handlers never choose a status: they return an *Error (usually built by
// one of the code variables below with WithDetail or Withf) and one writer
// turns it into the envelope
//
//	{"errors":[{"code":"MANIFEST_UNKNOWN","message":"...","detail":...}]}
//
// with the code's status. An error that carries no code is 500 UNKNOWN.
package ocierr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Code is one registered error code: its name, HTTP status and the default
// message that says what went wrong.
type Code struct {
	Name    string
	Status  int
	Message string
}

// registry of codes by name, so an envelope read back from a peer maps to
// the same Code values.
var codes = map[string]*Code{}

func register(name string, status int, message string) *Code {
	if _, dup := codes[name]; dup {
		panic("ocierr: code registered twice: " + name) // programmer error
	}
	c := &Code{Name: name, Status: status, Message: message}
	codes[name] = c
	return c
}

// The codes of OCI Distribution Spec v1.1 ("Error Codes"), with the status
// the spec's endpoint table gives each. The last four are not in the
// spec's table: the spec asks for 413 on a manifest over the size limit
// and 416 on an unsatisfiable range or an out-of-order chunk without
// naming a code (distribution uses RANGE_INVALID and
// PAGINATION_NUMBER_INVALID too), and every registry needs a code for its
// own failures.
var (
	BlobUnknown         = register("BLOB_UNKNOWN", http.StatusNotFound, "blob unknown to registry")
	BlobUploadInvalid   = register("BLOB_UPLOAD_INVALID", http.StatusBadRequest, "blob upload invalid")
	BlobUploadUnknown   = register("BLOB_UPLOAD_UNKNOWN", http.StatusNotFound, "blob upload unknown to registry")
	DigestInvalid       = register("DIGEST_INVALID", http.StatusBadRequest, "provided digest did not match uploaded content")
	ManifestBlobUnknown = register("MANIFEST_BLOB_UNKNOWN", http.StatusBadRequest, "manifest references a manifest or blob unknown to registry")
	ManifestInvalid     = register("MANIFEST_INVALID", http.StatusBadRequest, "manifest invalid")
	ManifestUnknown     = register("MANIFEST_UNKNOWN", http.StatusNotFound, "manifest unknown to registry")
	NameInvalid         = register("NAME_INVALID", http.StatusBadRequest, "invalid repository name")
	NameUnknown         = register("NAME_UNKNOWN", http.StatusNotFound, "repository name not known to registry")
	SizeInvalid         = register("SIZE_INVALID", http.StatusBadRequest, "provided length did not match content length")
	Unauthorized        = register("UNAUTHORIZED", http.StatusUnauthorized, "authentication required")
	Denied              = register("DENIED", http.StatusForbidden, "requested access to the resource is denied")
	Unsupported         = register("UNSUPPORTED", http.StatusMethodNotAllowed, "the operation is unsupported")
	TooManyRequests     = register("TOOMANYREQUESTS", http.StatusTooManyRequests, "too many requests")
	// PaginationNumberInvalid is distribution's code for a bad n=.
	PaginationNumberInvalid = register("PAGINATION_NUMBER_INVALID", http.StatusBadRequest, "invalid number of results requested")
	ManifestTooLarge        = register("MANIFEST_TOO_LARGE", http.StatusRequestEntityTooLarge, "manifest exceeds the registry's size limit")
	RangeInvalid            = register("RANGE_INVALID", http.StatusRequestedRangeNotSatisfiable, "invalid content range")
	// StorageFull is a region out of storage space: it serves pulls, and
	// takes pushes again once space is back (Retry-After).
	StorageFull = register("STORAGE_FULL", http.StatusInsufficientStorage, "the region is out of storage space")
	// ReadOnly is a region whose metadata store refuses writes (a
	// read-only database): it serves pulls, and takes pushes again once
	// its store does (Retry-After).
	ReadOnly = register("READ_ONLY", http.StatusServiceUnavailable, "the region takes no writes now")
	// RequestTimeout is a request body that stopped arriving (the idle
	// bound on uploads): the client's failure; it may resume the session.
	RequestTimeout = register("REQUEST_TIMEOUT", http.StatusRequestTimeout, "the request body stopped arriving")
	Unknown        = register("UNKNOWN", http.StatusInternalServerError, "unknown error")
	// Unavailable is a region that cannot take the request now (its
	// routing is off, or it failed its health checks): another may.
	Unavailable = register("UNAVAILABLE", http.StatusServiceUnavailable, "the region cannot serve this request now")
	// MediaTypeUnsupported is a management API body that is not JSON.
	MediaTypeUnsupported = register("UNSUPPORTED_MEDIA_TYPE", http.StatusUnsupportedMediaType, "the request body's media type is not accepted")
)

// Codes of georeg's management API (/_georeg/v1/), which configures the
// registry rather than content, so no OCI code fits its bad input.
var (
	RequestInvalid = register("REQUEST_INVALID", http.StatusBadRequest, "the request is invalid")
	AlreadyExists  = register("ALREADY_EXISTS", http.StatusConflict, "the resource already exists")
	// FeedCompacted is a peer asking for feed records that were compacted
	// away (docs/design.md, Feed compaction): it repairs from the region's
	// state instead.
	FeedCompacted = register("FEED_COMPACTED", http.StatusGone, "the feed records asked for were compacted away")
)

// Lookup returns the registered code with this name, or nil.
func Lookup(name string) *Code { return codes[name] }

// Error is one OCI error: a code, a message that says what to do, and an
// optional detail (any JSON value).
type Error struct {
	Code    *Code
	Message string
	Detail  any
	// RetryAfter, when set, is sent as the Retry-After header: when the
	// request may succeed if sent again.
	RetryAfter time.Duration
}

// Error implements error.
func (e *Error) Error() string {
	return e.Code.Name + ": " + e.Message
}

// Is lets errors.Is(err, ocierr.BlobUnknown) match any *Error of that code.
func (e *Error) Is(target error) bool {
	c, ok := target.(*Code)
	return ok && c == e.Code
}

// Error lets a *Code be used where an error is expected, with its default
// message.
func (c *Code) Error() string { return c.Name + ": " + c.Message }

// Is reports whether err is an *Error of this code.
func (c *Code) Is(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == c
}

// Withf returns an error of this code with a formatted message.
func (c *Code) Withf(format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// WithDetail returns an error of this code with a message and a detail.
func (c *Code) WithDetail(message string, detail any) *Error {
	return &Error{Code: c, Message: message, Detail: detail}
}

// From returns the *Error inside err, or UNKNOWN wrapping err when err
// carries no code. The UNKNOWN message is generic on purpose: internal
// errors are logged, not sent to clients.
func From(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	var c *Code
	if errors.As(err, &c) {
		return &Error{Code: c, Message: c.Message}, true
	}
	return &Error{Code: Unknown, Message: "internal error; the registry logged it with this request's id"}, false
}

type envelopeError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

type envelope struct {
	Errors []envelopeError `json:"errors"`
}

// Write writes err as the OCI envelope with its code's status. A HEAD
// request gets the status and headers without a body.
func Write(w http.ResponseWriter, r *http.Request, err *Error) {
	body, _ := json.Marshal(envelope{Errors: []envelopeError{{
		Code: err.Code.Name, Message: err.Message, Detail: err.Detail,
	}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	h.Del("Docker-Content-Digest")
	if err.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((err.RetryAfter+time.Second-1)/time.Second)))
	}
	w.WriteHeader(err.Code.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// maxErrorBody bounds how much of an error body a client reads.
const maxErrorBody = 16 << 10

// Read parses an error response from a registry into an *Error. It reads at
// most 16 KiB of the body. A body that is not an envelope yields an error
// with the code registered for the status when there is exactly one such
// code in the spec's common cases, else UNKNOWN, and the status text.
func Read(resp *http.Response) *Error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var env envelope
	if json.Unmarshal(data, &env) == nil && len(env.Errors) > 0 {
		e := env.Errors[0]
		c := Lookup(e.Code)
		if c == nil {
			c = &Code{Name: e.Code, Status: resp.StatusCode, Message: e.Message}
		}
		return &Error{Code: c, Message: e.Message, Detail: e.Detail}
	}
	c := Unknown
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		c = Unauthorized
	case http.StatusForbidden:
		c = Denied
	case http.StatusTooManyRequests:
		c = TooManyRequests
	}
	return &Error{Code: c, Message: fmt.Sprintf("%s (status %d)", http.StatusText(resp.StatusCode), resp.StatusCode)}
}

// Temporary reports whether a request that failed with err may succeed if
// retried unchanged.
func Temporary(err *Error) bool {
	return err.Code == TooManyRequests || err.Code == Unknown || err.Code.Status >= 500
}
