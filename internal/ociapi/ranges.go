package ociapi

import (
	"errors"
	"strconv"
	"strings"
)

// errRange marks a Range or Content-Range header that is malformed or
// cannot be satisfied.
var errRange = errors.New("invalid range")

// byteRange is an inclusive range of byte offsets [Start, End].
type byteRange struct {
	Start, End int64
}

func (b byteRange) length() int64 { return b.End - b.Start + 1 }

// parseRange reads a blob GET's Range header (RFC 9110 §14.1.2) against a
// blob of size bytes. It returns ok=false when the header asks for the
// whole blob (absent, or several ranges, which a server may ignore), and
// errRange when the one range asked for is malformed or unsatisfiable
// (the caller answers 416).
func parseRange(header string, size int64) (r byteRange, ok bool, err error) {
	if header == "" {
		return byteRange{}, false, nil
	}
	spec, found := strings.CutPrefix(header, "bytes=")
	if !found {
		return byteRange{}, false, errRange
	}
	if strings.Contains(spec, ",") {
		return byteRange{}, false, nil
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return byteRange{}, false, errRange
	}
	switch {
	case first == "": // suffix: the last N bytes
		n, err := parseOffset(last)
		if err != nil || n == 0 || size == 0 {
			return byteRange{}, false, errRange
		}
		if n > size {
			n = size
		}
		return byteRange{Start: size - n, End: size - 1}, true, nil
	default:
		start, err := parseOffset(first)
		if err != nil || start >= size {
			return byteRange{}, false, errRange
		}
		end := size - 1
		if last != "" {
			e, err := parseOffset(last)
			if err != nil || e < start {
				return byteRange{}, false, errRange
			}
			if e < end {
				end = e
			}
		}
		return byteRange{Start: start, End: end}, true, nil
	}
}

// parseContentRange reads a PATCH's Content-Range: the spec's "start-end"
// (inclusive), also accepting the RFC form "bytes start-end/total".
func parseContentRange(header string) (byteRange, error) {
	s := strings.TrimSpace(header)
	if rest, ok := strings.CutPrefix(s, "bytes "); ok {
		s, _, _ = strings.Cut(rest, "/")
	}
	first, last, found := strings.Cut(s, "-")
	if !found {
		return byteRange{}, errRange
	}
	start, err1 := parseOffset(first)
	end, err2 := parseOffset(last)
	if err1 != nil || err2 != nil || end < start {
		return byteRange{}, errRange
	}
	return byteRange{Start: start, End: end}, nil
}

// parseOffset parses a non-negative decimal offset: digits only, no sign,
// no spaces, at most 18 digits so it never overflows int64.
func parseOffset(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, errRange
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errRange
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
