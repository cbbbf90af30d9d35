// Package feed carries a region's change feed between regions: the wire
// form of a record, the GET /_georeg/v1/feed handler and its client.
//
// A region's feed lists the changes it originated (blob linked, manifest
// stored, tag set, tag deleted, manifest deleted) in commit order, with
// sequence numbers without gaps. Peers pull it: GET
// /_georeg/v1/feed?since=N&limit=L&wait=D returns the records after N, or
// waits up to D (long-poll) for the first one to commit. Requests carry a
// region token of a member region (internal/peerauth).
package feed

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/hlc"
	"github.com/georeg/georeg/internal/meta"
	"github.com/georeg/georeg/internal/oci"
)

// Path is where a region serves its feed.
const Path = "/_georeg/v1/feed"

// VersionHeader is the response header in which a region tells a peer
// (a request carrying a peer credential) the version of the manifest or
// blob link it serves, so the peer stores what it fetches with its real
// version and never lets a copy older than a delete it holds win over the
// delete (invariant 9). Absent for content held without a version (a
// manifest or blob borrowed by read-through).
const VersionHeader = "Georeg-Version"

// RelayOriginHeader, on a peer's blob GET, asks the region to relay the
// blob of that origin's feed (replicate.Replicator.RelayBlob): fetch it
// from the origin if it does not hold it, and stream it on.
// RelaySizeHeader tells the blob's size from the feed record.
const (
	RelayOriginHeader = "Georeg-Relay-Origin"
	RelaySizeHeader   = "Georeg-Relay-Size"
)

// Record is one change on the wire.
type Record struct {
	Seq       int64         `json:"seq"`
	Kind      string        `json:"kind"`
	Repo      string        `json:"repo"`
	Digest    digest.Digest `json:"digest,omitempty"`
	Tag       string        `json:"tag,omitempty"`
	MediaType string        `json:"mediaType,omitempty"`
	Size      int64         `json:"size,omitempty"`
	Version   string        `json:"version"` // hlc.Version.String()
	Created   time.Time     `json:"created"`
	// Data carries a small manifest's or blob's bytes (base64 in JSON),
	// verified by the receiver against Digest like any fetched content, or
	// a setting's JSON value.
	Data []byte `json:"data,omitempty"`
	// Deleted marks a setting that is a tombstone.
	Deleted bool `json:"deleted,omitempty"`
}

// Page is one answer of the feed endpoint.
type Page struct {
	Region  string   `json:"region"`
	Head    int64    `json:"head"` // seq of the region's newest record
	Records []Record `json:"records"`
	// Ready: the serving region has been Ready (it holds every region's
	// content once). A region that joins waits for every such peer
	// before it says Ready itself, even before the peer's Ready mark
	// reached it through the replicated settings.
	Ready bool `json:"ready,omitempty"`
}

// FromMeta converts a stored record to its wire form.
func FromMeta(r meta.Record) Record {
	return Record{Seq: r.Seq, Kind: r.Kind, Repo: r.Repo, Digest: r.Digest, Tag: r.Tag,
		MediaType: r.MediaType, Size: r.Size, Version: r.Version.String(), Created: r.Created, Data: r.Data, Deleted: r.Deleted}
}

// Meta converts a wire record back, checked by Validate first.
func (r Record) Meta() meta.Record {
	v, _ := hlc.ParseVersion(r.Version)
	return meta.Record{Seq: r.Seq, Kind: r.Kind, Repo: r.Repo, Digest: r.Digest, Tag: r.Tag,
		MediaType: r.MediaType, Size: r.Size, Version: v, Created: r.Created, Data: r.Data, Deleted: r.Deleted}
}

// settingKindRegexp is the form of a setting's kind: replica, webhook...
var settingKindRegexp = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// ErrBadRecord wraps every reason ParsePage refuses a page.
var ErrBadRecord = errors.New("bad feed record")

// Validate checks a record a peer sent: a known kind, a valid repository,
// the digest or tag its kind needs, a version.
func (r Record) Validate() error {
	if r.Seq <= 0 {
		return fmt.Errorf("%w: seq %d", ErrBadRecord, r.Seq)
	}
	if _, err := hlc.ParseVersion(r.Version); err != nil {
		return fmt.Errorf("%w: seq %d: %v", ErrBadRecord, r.Seq, err)
	}
	if r.Kind == meta.KindSetting {
		switch {
		case r.Repo != "" || r.Digest != "":
			return fmt.Errorf("%w: seq %d: a setting names no repository or digest", ErrBadRecord, r.Seq)
		case !settingKindRegexp.MatchString(r.MediaType):
			return fmt.Errorf("%w: seq %d: setting kind %q", ErrBadRecord, r.Seq, r.MediaType)
		case r.Tag == "" || len(r.Tag) > 255:
			return fmt.Errorf("%w: seq %d: setting name of %d characters", ErrBadRecord, r.Seq, len(r.Tag))
		case !r.Deleted && !json.Valid(r.Data):
			return fmt.Errorf("%w: seq %d: setting value is not JSON", ErrBadRecord, r.Seq)
		}
		return nil
	}
	if err := oci.ValidateRepository(r.Repo); err != nil {
		return fmt.Errorf("%w: seq %d: %v", ErrBadRecord, r.Seq, err)
	}
	needDigest, needTag := false, false
	switch r.Kind {
	case meta.KindBlob, meta.KindManifest, meta.KindManifestDelete, meta.KindBlobDelete, meta.KindAck:
		needDigest = true
	case meta.KindTag:
		needDigest, needTag = true, true
	case meta.KindTagDelete:
		needTag = true
	default:
		return fmt.Errorf("%w: seq %d: unknown kind %q", ErrBadRecord, r.Seq, r.Kind)
	}
	if needDigest && r.Digest.Validate() != nil {
		return fmt.Errorf("%w: seq %d: digest %q", ErrBadRecord, r.Seq, r.Digest)
	}
	// A manifest record may name the tag it was pushed with.
	if (needTag || r.Tag != "") && oci.ValidateTag(r.Tag) != nil {
		return fmt.Errorf("%w: seq %d: tag %q", ErrBadRecord, r.Seq, r.Tag)
	}
	if r.Size < 0 {
		return fmt.Errorf("%w: seq %d: size %d", ErrBadRecord, r.Seq, r.Size)
	}
	if r.Data != nil && (r.Kind != meta.KindBlob && r.Kind != meta.KindManifest || int64(len(r.Data)) != r.Size) {
		return fmt.Errorf("%w: seq %d: inline data of %d bytes on a %s record of size %d", ErrBadRecord, r.Seq, len(r.Data), r.Kind, r.Size)
	}
	return nil
}

// maxPageBytes bounds what a client reads of one page.
const maxPageBytes = 16 << 20

// ParsePage reads and checks a page: every record valid, seqs increasing
// and after since. A page that fails is refused whole, so nothing of it is
// applied.
func ParsePage(rd io.Reader, since int64) (*Page, error) {
	var p Page
	dec := json.NewDecoder(io.LimitReader(rd, maxPageBytes))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	last := since
	for _, r := range p.Records {
		if err := r.Validate(); err != nil {
			return nil, err
		}
		if r.Seq <= last {
			return nil, fmt.Errorf("%w: seq %d after %d", ErrBadRecord, r.Seq, last)
		}
		last = r.Seq
	}
	if p.Head < last {
		return nil, fmt.Errorf("%w: head %d before record %d", ErrBadRecord, p.Head, last)
	}
	return &p, nil
}
