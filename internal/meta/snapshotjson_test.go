package meta

import (
	"bytes"
	"encoding/json"
	"testing"
)

// snapshotRepoOf is a repository snapshot holding every kind of value a
// row can: text, integer, null and bytes.
func snapshotRepoOf(repo, text string, n int64, b []byte) *SnapshotRepo {
	return &SnapshotRepo{Repo: repo, Tables: map[string]*TableRows{
		"manifests": {Columns: []string{"repo", text, "size", "payload", "subject"},
			Rows: [][]any{{repo, text, n, snapshotBytes(b), nil}, {text, "", -n, snapshotBytes(nil), int64(0)}}},
		"tags":   {Columns: []string{"repo"}, Rows: [][]any{{repo}, nil}},
		text:     {Columns: nil, Rows: nil},
		"blobs":  nil,
		"extra":  {Columns: []string{}, Rows: [][]any{{float64(1.5), true, map[string]any{"k": text}}}},
		"\u2028": {Columns: []string{"<&>"}, Rows: [][]any{}},
	}}
}

// TestASnapshotRepoIsEncodedAsEncodingJSONWould: the reflection-free
// encoder gives json.Marshal's bytes, and the loader's decoding gives the
// values back.
func TestASnapshotRepoIsEncodedAsEncodingJSONWould(t *testing.T) {
	for _, c := range []struct {
		repo, text string
		n          int64
		b          []byte
	}{
		{"a/b", "media_type", 42, []byte(`{"schemaVersion":2}`)},
		{"quote\"d", "back\\slash", -1 << 63, nil},
		{"ünïcode", "<script>&", 1<<63 - 1, []byte{0, 0xff}},
		{"ctl\x01\n\t", "invalid \xff utf-8", 0, []byte{}},
		{"", "\u2028\u2029", 7, bytes.Repeat([]byte{1}, 100)},
	} {
		sr := snapshotRepoOf(c.repo, c.text, c.n, c.b)
		want, err := json.Marshal(sr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sr.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON:\n%s\njson.Marshal:\n%s", got, want)
		}
	}
	// What the joining region decodes is what was read.
	sr := snapshotRepoOf("a/b", "media_type", 42, []byte("payload"))
	b, _ := sr.AppendJSON(nil)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var back SnapshotRepo
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	args, err := snapshotArgs(back.Tables["manifests"].Rows[0])
	if err != nil {
		t.Fatal(err)
	}
	if args[0] != "a/b" || args[2] != int64(42) || string(args[3].([]byte)) != "payload" || args[4] != nil {
		t.Fatalf("decoded %#v", args)
	}
}

// FuzzSnapshotRepoAppendJSON holds AppendJSON to json.Marshal's output
// for any text, integer and bytes.
func FuzzSnapshotRepoAppendJSON(f *testing.F) {
	f.Add("gen/r1", "sha256:abc", int64(5), []byte("x"))
	f.Add("a\"b", "<>&\u2028", int64(-9), []byte{0xff})
	f.Fuzz(func(t *testing.T, repo, text string, n int64, b []byte) {
		sr := snapshotRepoOf(repo, text, n, b)
		want, err := json.Marshal(sr)
		if err != nil {
			t.Skip() // nothing encoding/json refuses reaches a snapshot
		}
		got, err := sr.AppendJSON(nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON %q (%v), json.Marshal %q", got, err, want)
		}
	})
}
