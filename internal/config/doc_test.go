package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fieldPaths returns the YAML path of every field of t, nested fields
// after their parent (slices and pointers by their element); a section
// (a struct field) only by its fields, a list of structs by itself and
// its fields.
func fieldPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if strings.Contains(opts, "inline") {
			out = append(out, fieldPaths(ft, prefix)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		section := f.Type.Kind() == reflect.Struct && ft.PkgPath() != "time"
		if !section { // a section is documented by its fields
			out = append(out, prefix+name)
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() != "time" {
			out = append(out, fieldPaths(ft, prefix+name+".")...)
		}
	}
	return out
}

// TestTheConfigurationReferenceIsTrue: docs/config.md's example loads
// (unknown fields refused) and validates, and its table names every field
// of the configuration, and no field that is not one.
func TestTheConfigurationReferenceIsTrue(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)

	example := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(text)
	if example == nil {
		t.Fatal("docs/config.md has no yaml example")
	}
	for _, env := range []string{"PG_PASSWORD", "S3_SECRET_KEY", "GEOREG_REPLICATION_SECRET"} {
		t.Setenv(env, "example-"+strings.ToLower(env))
	}
	path := filepath.Join(t.TempDir(), "region.yaml")
	if err := os.WriteFile(path, []byte(example[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	if c.Region.Content.S3.SecretKey != "example-s3_secret_key" || len(c.Replication.Peers) != 2 {
		t.Fatalf("the example loaded as %+v", c)
	}

	fields := fieldPaths(reflect.TypeOf(Config{}), "")
	if len(fields) < 50 {
		t.Fatalf("only %d fields found: the walk lost some", len(fields))
	}
	for _, f := range fields {
		if !strings.Contains(text, "`"+f+"`") {
			t.Errorf("docs/config.md does not document %s", f)
		}
		if !strings.Contains(example[1], f[strings.LastIndex(f, ".")+1:]+":") {
			t.Errorf("docs/config.md's example does not show %s", f)
		}
	}
	for _, row := range regexp.MustCompile("(?m)^\\| (`[^|]+) \\|").FindAllStringSubmatch(text, -1) {
		for _, name := range regexp.MustCompile("`([a-zA-Z.]+)`").FindAllStringSubmatch(row[1], -1) {
			if !slices.Contains(fields, name[1]) {
				t.Errorf("docs/config.md documents %s, which is not a field", name[1])
			}
		}
	}
}
