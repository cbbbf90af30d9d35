package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseAndValidate(t *testing.T) {
	t.Run("a file sets fields over the defaults", func(t *testing.T) {
		c := Default()
		if err := Parse([]byte("region:\n  name: westeurope\nhttp:\n  listen: 127.0.0.1:6000\n"), &c); err != nil {
			t.Fatal(err)
		}
		if c.Region.Name != "westeurope" || c.HTTP.Listen != "127.0.0.1:6000" || c.Region.DataDir != "./data" {
			t.Fatalf("got %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an empty file keeps the defaults", func(t *testing.T) {
		c := Default()
		if err := Parse(nil, &c); err != nil || !reflect.DeepEqual(c, Default()) {
			t.Fatalf("got %+v, %v", c, err)
		}
	})
	t.Run("an unknown field is an error, not a silent default", func(t *testing.T) {
		c := Default()
		if err := Parse([]byte("region:\n  nmae: x\n"), &c); err == nil || !strings.Contains(err.Error(), "nmae") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("every problem is reported with its field path", func(t *testing.T) {
		c := Default()
		c.Region.Name = "East US"
		c.Region.DataDir = ""
		c.HTTP.Listen = "nowhere"
		c.HTTP.BlobCopy = "teleport"
		c.Log.Level = "loud"
		c.Log.Format = "xml"
		err := c.Validate()
		for _, field := range []string{"region.name", "region.dataDir", "http.listen", "http.blobCopy", "log.level", "log.format"} {
			if err == nil || !strings.Contains(err.Error(), field) {
				t.Errorf("no error for %s in: %v", field, err)
			}
		}
	})
}
