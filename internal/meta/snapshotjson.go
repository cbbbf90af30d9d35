package meta

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
)

// A snapshot is most of what a Ready region spends serving a region that
// joins: encoding its rows through encoding/json's reflection cost a
// fifth of it (docs/performance.md). AppendJSON writes the same bytes as
// json.Marshal for the values a row holds (int64, string, nil, bytes),
// appending plain strings directly and handing any other string or value
// to encoding/json, so the format stays encoding/json's own; a fuzz test
// holds the two to the same output.

// snapshotBytes is a bytes value of a snapshot row, sent as
// {"b": base64}.
type snapshotBytes []byte

// MarshalJSON encodes b as {"b": base64}.
func (b snapshotBytes) MarshalJSON() ([]byte, error) { return appendSnapshotBytes(nil, b), nil }

func appendSnapshotBytes(dst []byte, b []byte) []byte {
	dst = append(dst, `{"b":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, `"}`...)
}

// AppendJSON appends sr encoded as json.Marshal would encode it (table
// names in sorted order, as encoding/json orders a map's keys).
func (sr *SnapshotRepo) AppendJSON(dst []byte) ([]byte, error) {
	var err error
	dst = append(dst, `{"repo":`...)
	dst, err = appendJSONString(dst, sr.Repo)
	if err != nil {
		return nil, err
	}
	dst = append(dst, `,"tables":`...)
	if sr.Tables == nil {
		return append(dst, `null}`...), nil
	}
	names := make([]string, 0, len(sr.Tables))
	for n := range sr.Tables {
		names = append(names, n)
	}
	slices.Sort(names)
	dst = append(dst, '{')
	for i, n := range names {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = appendJSONString(dst, n); err != nil {
			return nil, err
		}
		dst = append(dst, ':')
		if dst, err = sr.Tables[n].appendJSON(dst); err != nil {
			return nil, err
		}
	}
	return append(dst, `}}`...), nil
}

func (t *TableRows) appendJSON(dst []byte) ([]byte, error) {
	if t == nil {
		return append(dst, `null`...), nil
	}
	var err error
	dst = append(dst, `{"columns":`...)
	if t.Columns == nil {
		dst = append(dst, `null`...)
	} else {
		dst = append(dst, '[')
		for i, c := range t.Columns {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendJSONString(dst, c); err != nil {
				return nil, err
			}
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"rows":`...)
	if t.Encoded != "" {
		dst = append(dst, t.Encoded...)
		return append(dst, '}'), nil
	}
	if t.Rows == nil {
		return append(dst, `null}`...), nil
	}
	dst = append(dst, '[')
	for i, row := range t.Rows {
		if i > 0 {
			dst = append(dst, ',')
		}
		if row == nil {
			dst = append(dst, `null`...)
			continue
		}
		dst = append(dst, '[')
		for j, v := range row {
			if j > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendJSONValue(dst, v); err != nil {
				return nil, err
			}
		}
		dst = append(dst, ']')
	}
	return append(dst, `]}`...), nil
}

// appendJSONValue appends the values a row holds directly, anything else
// through encoding/json.
func appendJSONValue(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, `null`...), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case string:
		return appendJSONString(dst, x)
	case snapshotBytes:
		return appendSnapshotBytes(dst, x), nil
	}
	b, err := json.Marshal(v)
	return append(dst, b...), err
}

// appendJSONString appends s quoted; a string with anything encoding/json
// escapes (a quote, a backslash, a control or non-ASCII byte, or <, >
// and & which it escapes for HTML) goes through encoding/json.
func appendJSONString(dst []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, err := json.Marshal(s)
			return append(dst, b...), err
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"'), nil
}
