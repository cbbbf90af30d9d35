package webhook

import (
	"encoding/json"
	"testing"
)

// FuzzParseScope: any string is refused or gives a scope whose matching
// terminates and agrees with the rules ("" matches all; a literal scope
// matches itself).
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"", "app", "app:*", "team/*:release-*", "a*b*c:*", "**:*", "x:y:z", "A:b"} {
		f.Add(s, "team/app", "v1")
	}
	f.Fuzz(func(t *testing.T, scope, repo, tag string) {
		s, err := ParseScope(scope)
		if err != nil {
			return
		}
		_ = s.Matches(repo, tag)
		if scope == "" && !s.Matches(repo, tag) {
			t.Fatal("the empty scope must match everything")
		}
		if s.Repo != "" && !containsStar(s.Repo) && !containsStar(s.Tag) && !s.Matches(s.Repo, s.Tag) {
			t.Fatalf("scope %q does not match its own literal %s:%s", scope, s.Repo, s.Tag)
		}
	})
}

func containsStar(s string) bool {
	for i := range len(s) {
		if s[i] == '*' {
			return true
		}
	}
	return false
}

// FuzzConfig: a webhook body from the API either validates or is refused;
// a valid one survives a round trip through its stored form.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(`{"serviceUri":"http://127.0.0.1:9/h","actions":["push"],"scope":"app:*","customHeaders":{"A":"b"}}`))
	f.Add([]byte(`{"serviceUri":"ftp://x","actions":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Config
		if json.Unmarshal(b, &c) != nil || c.Validate() != nil {
			return
		}
		stored, err := json.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(stored)
		if err != nil {
			t.Fatal(err)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("stored form of a valid config does not validate: %v", err)
		}
	})
}
