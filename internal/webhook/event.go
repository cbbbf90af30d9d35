package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Event is what happened, as the outbox keeps it and the ACR payload
// carries it: ACR's fields (id, timestamp, action, target, request) plus
// region (where it happened), origin (for replicated events: the region
// the change was made in) and error (for replication-failed).
type Event struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    Target    `json:"target"`
	Request   Request   `json:"request"`
	Region    string    `json:"region"`
	Origin    string    `json:"origin,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// Target is the image (or tag) an event is about.
type Target struct {
	MediaType  string `json:"mediaType,omitempty"`
	Size       int64  `json:"size,omitempty"`
	Digest     string `json:"digest,omitempty"`
	Length     int64  `json:"length,omitempty"`
	Repository string `json:"repository,omitempty"`
	Tag        string `json:"tag,omitempty"`
}

// Request is the client request that caused an event; replicated events
// carry the method REPLICATE and the origin region as host.
type Request struct {
	ID        string `json:"id,omitempty"`
	Host      string `json:"host,omitempty"`
	Method    string `json:"method,omitempty"`
	UserAgent string `json:"useragent,omitempty"`
	// Actor (who authenticated; "" for anonymous) and Client (the
	// client's address) are for the audit log, not the payload.
	Actor  string `json:"-"`
	Client string `json:"-"`
}

// NewID returns a fresh event id (128 random bits, hex).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type requestKey struct{}

// WithRequest returns ctx carrying the client request r, so an event a
// handler causes names it. The caller may fill r.Actor in later (once
// the request authenticated), before the handler runs.
func WithRequest(ctx context.Context, r *Request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// RequestFrom returns the request WithRequest put in ctx.
func RequestFrom(ctx context.Context) Request {
	if r, ok := ctx.Value(requestKey{}).(*Request); ok && r != nil {
		return *r
	}
	return Request{}
}

// SetActor records who the request in ctx authenticated as.
func SetActor(ctx context.Context, actor string) {
	if r, ok := ctx.Value(requestKey{}).(*Request); ok && r != nil {
		r.Actor = actor
	}
}

// cloudEvent is a CloudEvents 1.0 event in structured JSON mode.
type cloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Time            time.Time `json:"time"`
	Subject         string    `json:"subject,omitempty"`
	DataContentType string    `json:"datacontenttype"`
	Data            Event     `json:"data"`
}

// Body renders ev in format and returns it with its Content-Type.
func Body(ev Event, format string) ([]byte, string, error) {
	if format != FormatCloudEvents {
		b, err := json.Marshal(ev)
		return b, "application/json", err
	}
	subject := ev.Target.Repository
	switch {
	case ev.Target.Tag != "":
		subject += ":" + ev.Target.Tag
	case ev.Target.Digest != "":
		subject += "@" + ev.Target.Digest
	}
	b, err := json.Marshal(cloudEvent{
		SpecVersion: "1.0", ID: ev.ID, Source: "/georeg/regions/" + ev.Region,
		Type: "io.georeg.image." + ev.Action, Time: ev.Timestamp, Subject: subject,
		DataContentType: "application/json", Data: ev,
	})
	return b, "application/cloudevents+json", err
}

// SignatureHeader carries the HMAC-SHA256 of the body, keyed with the
// webhook's secret, as "sha256=<hex>".
const SignatureHeader = "X-Georeg-Signature-256"

// EventIDHeader carries the event's id, the same over every retry.
const EventIDHeader = "X-Georeg-Event-Id"

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return fmt.Sprintf("sha256=%x", m.Sum(nil))
}

// Verify reports whether sig is body's signature under secret, in
// constant time: what a receiver does.
func Verify(secret string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}
