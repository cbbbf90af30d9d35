package oci

import (
	"crypto/sha256"
	_ "crypto/sha512" // registers sha512 with go-digest
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// MaxRepositoryLength is the longest repository name accepted, as in
// distribution/reference.
const MaxRepositoryLength = reference.NameTotalLengthMax

var (
	// A repository name is the path part of the reference grammar: lower
	// case components joined by '/', no domain or port.
	repositoryRegexp = regexp.MustCompile(`^` + reference.NameRegexp.String() + `$`)
	tagRegexp        = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)
)

// Errors returned by the parsers; callers map them to OCI codes.
var (
	ErrNameInvalid   = errors.New("invalid repository name")
	ErrTagInvalid    = errors.New("invalid tag")
	ErrDigestInvalid = errors.New("invalid digest")
)

// ValidateRepository checks a repository name against the grammar of the
// Distribution spec: components of [a-z0-9] joined by '.', '_', '__' or
// '-', separated by '/', 255 characters at most.
func ValidateRepository(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrNameInvalid)
	case len(name) > MaxRepositoryLength:
		return fmt.Errorf("%w: %d characters, the limit is %d", ErrNameInvalid, len(name), MaxRepositoryLength)
	case strings.Contains(name, ":"), !repositoryRegexp.MatchString(name):
		return fmt.Errorf("%w: %q must be lower-case components of [a-z0-9] separated by '/', joined inside by '.', '_', '__' or '-'", ErrNameInvalid, name)
	}
	return nil
}

// ValidateTag checks a tag: [A-Za-z0-9_] then up to 127 of [A-Za-z0-9_.-].
func ValidateTag(tag string) error {
	if !tagRegexp.MatchString(tag) {
		return fmt.Errorf("%w: %q must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", ErrTagInvalid, tag)
	}
	return nil
}

// ParseDigest parses and validates a digest of a supported algorithm
// (sha256, sha512).
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v; use ALGORITHM:HEX, e.g. sha256:<64 hex digits>", ErrDigestInvalid, s, err)
	}
	return d, nil
}

// IsDigest reports whether a manifest reference looks like a digest rather
// than a tag (a tag cannot contain ':').
func IsDigest(ref string) bool { return strings.Contains(ref, ":") }

// EmptySHA256 is the digest of zero bytes.
var EmptySHA256 = digest.Digest(fmt.Sprintf("sha256:%x", sha256.Sum256(nil)))

// MatchPattern matches a repository name or tag against a pattern where
// '*' stands for any run of characters ('/' included), as webhook scopes
// and scope maps use them. It runs in O(len(pattern) x len(name)) at worst.
func MatchPattern(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			p, mark = star+1, mark+1
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
