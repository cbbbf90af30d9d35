package cli

import (
	"bytes"
	"strings"
	"testing"
)

type thing struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	Tags  []string
}

func TestEveryOutputFormatAndQuery(t *testing.T) {
	v := []thing{{"app", 2, []string{"v1"}}, {"web", 0, nil}}
	rows := [][]string{{"app", "2"}, {"web", "0"}}
	for _, tc := range []struct {
		format, query, want string
	}{
		{"table", "", "NAME  COUNT\napp   2\nweb   0\n"},
		{"tsv", "", "app\t2\nweb\t0\n"},
		{"none", "", ""},
		{"json", "", "[\n  {\n    \"name\": \"app\",\n    \"count\": 2,\n    \"Tags\": [\n      \"v1\"\n    ]\n  },\n  {\n    \"name\": \"web\",\n    \"count\": 0,\n    \"Tags\": null\n  }\n]\n"},
		{"yaml", "", "- Tags:\n    - v1\n  count: 2\n  name: app\n- Tags: null\n  count: 0\n  name: web\n"},
		{"json", "[?count > `0`].name", "[\n  \"app\"\n]\n"},
		{"tsv", "[].name", "app\nweb\n"},
		{"table", "[].{n: name, c: count}", "C  N\n2  app\n0  web\n"},
		{"table", "length(@)", "RESULT\n2\n"},
		{"yaml", "[0].name", "app\n"},
	} {
		var b bytes.Buffer
		if err := Render(&b, tc.format, tc.query, v, "NAME\tCOUNT", rows); err != nil {
			t.Errorf("%s %q: %v", tc.format, tc.query, err)
			continue
		}
		if b.String() != tc.want {
			t.Errorf("%s %q:\n%q\nwant\n%q", tc.format, tc.query, b.String(), tc.want)
		}
	}
	var b bytes.Buffer
	if err := Render(&b, "jsonc", "", v[:1], "", nil); err != nil || !strings.Contains(b.String(), "\x1b[34m\"name\"\x1b[0m: \x1b[32m\"app\"\x1b[0m,") {
		t.Errorf("jsonc: %v %q", err, b.String())
	}
	if err := Render(&b, "xml", "", v, "", nil); err == nil || !strings.Contains(err.Error(), "table, json, jsonc, yaml, tsv or none") {
		t.Errorf("an unknown format: %v", err)
	}
	if err := Render(&b, "json", "[?", v, "", nil); err == nil || !strings.Contains(err.Error(), "--query") {
		t.Errorf("a bad query: %v", err)
	}
}
