package meta

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// decodeRow decodes a snapshot row as a joiner does.
func decodeRow(t testing.TB, s string) ([]any, bool) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var row []any
	return row, dec.Decode(&row) == nil
}

// TestASnapshotRowsValuesAreTakenOrRefusedWhole: a row's bytes come as
// {"b": base64} (format 1, and PostgreSQL stores), {"x": hex} (a
// SQLite store's own encoding, either case) or {"t": text} (format 3, a
// SQLite store's bytes that are text); anything else in an object,
// or an integer that is not one, refuses the row.
func TestASnapshotRowsValuesAreTakenOrRefusedWhole(t *testing.T) {
	for _, c := range []struct {
		row  string
		want []any // nil: refused
	}{
		{`["app", 7, null]`, []any{"app", int64(7), nil}},
		{`[{"b": "AP8="}]`, []any{[]byte{0, 0xff}}},
		{`[{"x": "00FF"}]`, []any{[]byte{0, 0xff}}},
		{`[{"x": "00ff"}]`, []any{[]byte{0, 0xff}}},
		{`[{"x": ""}]`, []any{[]byte{}}},
		{`[{"t": "{\"a\":\"\u00e9\"}"}]`, []any{[]byte(`{"a":"é"}`)}},
		{`[{"t": ""}]`, []any{[]byte{}}},
		{`[{"t": 1}]`, nil},
		{`[{"t": "a", "x": "00"}]`, nil},
		{`[{"b": "!!"}]`, nil},
		{`[{"x": "0"}]`, nil},
		{`[{"x": "zz"}]`, nil},
		{`[{"y": "00"}]`, nil},
		{`[{"b": 1}]`, nil},
		{`[{"b": "AA==", "x": "00"}]`, nil},
		{`[{}]`, nil},
		{`[1.5]`, nil},
		{`[true]`, nil},
		{`[[1]]`, nil},
	} {
		row, ok := decodeRow(t, c.row)
		if !ok {
			t.Fatalf("%s does not decode", c.row)
		}
		got, err := snapshotArgs(row)
		if c.want == nil {
			if err == nil {
				t.Errorf("%s: taken as %#v, want refused", c.row, got)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Errorf("%s: %#v (%v), want %#v", c.row, got, err, c.want)
			continue
		}
		for i := range got {
			gb, gIsBytes := got[i].([]byte)
			wb, wIsBytes := c.want[i].([]byte)
			if gIsBytes != wIsBytes || (gIsBytes && !bytes.Equal(gb, wb)) || (!gIsBytes && got[i] != c.want[i]) {
				t.Errorf("%s: value %d is %#v, want %#v", c.row, i, got[i], c.want[i])
			}
		}
	}
}

// FuzzSnapshotArgs: whatever a row holds, snapshotArgs takes or refuses
// it without panicking, and bytes it takes are the same however they
// were encoded (base64, hex, or text when they are valid UTF-8).
func FuzzSnapshotArgs(f *testing.F) {
	for _, s := range []string{`["app", 7, null]`, `[{"b": "AP8="}]`, `[{"x": "00FF"}]`, `[{"t": "{}"}]`, `[{"x": "0"}]`, `[{"b": "AA==", "x": "00"}]`, `[9223372036854775808]`, `[-1e3]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		row, ok := decodeRow(t, s)
		if !ok {
			return
		}
		args, err := snapshotArgs(row)
		if err != nil {
			return
		}
		if len(args) != len(row) {
			t.Fatalf("%d values for %d", len(args), len(row))
		}
		for _, a := range args {
			b, isBytes := a.([]byte)
			if !isBytes {
				continue
			}
			encodings := []map[string]any{{"b": base64.StdEncoding.EncodeToString(b)}, {"x": hex.EncodeToString(b)}}
			if utf8.Valid(b) {
				encodings = append(encodings, map[string]any{"t": string(b)})
			}
			for _, o := range encodings {
				again, err := snapshotArgs([]any{o})
				if err != nil || !bytes.Equal(again[0].([]byte), b) {
					t.Fatalf("%x encoded as %v comes back as %v (%v)", b, o, again, err)
				}
			}
		}
	})
}
