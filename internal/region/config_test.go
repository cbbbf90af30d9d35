package region_test

import (
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/region"
)

func TestRegionDefaultsFillOnlyWhatIsUnset(t *testing.T) {
	got := region.Config{Node: "n1"}.WithDefaults()
	want := region.Config{Node: "n1", MaxManifestSize: region.DefaultMaxManifestSize, UploadTTL: region.DefaultUploadTTL,
		CacheBytes: region.DefaultCacheBytes, GCInterval: 24 * time.Hour, GCGrace: 24 * time.Hour, MinFreeSpace: region.DefaultMinFreeSpace,
		RetentionInterval: time.Hour, Content: region.ContentConfig{Driver: "fs"}, Metadata: region.MetadataConfig{Driver: "sqlite"}}
	if got.MaxManifestSize != want.MaxManifestSize || got.UploadTTL != want.UploadTTL || got.CacheBytes != want.CacheBytes ||
		got.GCInterval != want.GCInterval || got.GCGrace != want.GCGrace || got.MinFreeSpace != want.MinFreeSpace ||
		got.RetentionInterval != want.RetentionInterval || got.Content.Driver != "fs" || got.Metadata.Driver != "sqlite" || got.Node != "n1" {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
	set := region.Config{Node: "n2", MaxManifestSize: 7, UploadTTL: 6, CacheBytes: -1, GCInterval: 5, GCGrace: 4, MinFreeSpace: 3,
		RetentionInterval: 2, Content: region.ContentConfig{Driver: "s3"}, Metadata: region.MetadataConfig{Driver: "postgres"}}
	got = set.WithDefaults()
	if got.MaxManifestSize != 7 || got.UploadTTL != 6 || got.CacheBytes != -1 || got.GCInterval != 5 || got.GCGrace != 4 ||
		got.MinFreeSpace != 3 || got.RetentionInterval != 2 || got.Content.Driver != "s3" || got.Metadata.Driver != "postgres" {
		t.Fatalf("set fields changed: %+v", got)
	}
	if got := (region.Config{RetentionInterval: -time.Second}).WithDefaults(); got.RetentionInterval != time.Hour {
		t.Fatalf("a negative retention interval stays %s", got.RetentionInterval)
	}
	if got := (region.Config{}).WithDefaults(); got.Node == "" {
		t.Fatal("no node name: the host name is not taken")
	}
}

func TestRegionConfigRefusesEachBadFieldByName(t *testing.T) {
	good := region.Config{Name: "eastus", DataDir: "/d", Node: "n1"}.WithDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}
	zero := good
	zero.MaxManifestSize, zero.GCGrace, zero.UploadTTL = 0, 0, 0
	if err := zero.Validate(); err != nil {
		t.Fatalf("zero bounds: %v", err)
	}
	for field, set := range map[string]func(*region.Config){
		"name: \"East\"":       func(c *region.Config) { c.Name = "East" },
		"is reserved":          func(c *region.Config) { c.Name = region.ReservedName },
		"dataDir":              func(c *region.Config) { c.DataDir = "" },
		"maxManifestSize":      func(c *region.Config) { c.MaxManifestSize = -1 },
		"gcGrace":              func(c *region.Config) { c.GCGrace = -1 },
		"uploadTTL":            func(c *region.Config) { c.UploadTTL = -1 },
		"content.driver":       func(c *region.Config) { c.Content.Driver = "nfs" },
		"metadata.driver: \"m": func(c *region.Config) { c.Metadata.Driver = "mysql" },
		"metadata.dsn":         func(c *region.Config) { c.Metadata.Driver = "postgres" },
		"metadata.writeLanes: 17": func(c *region.Config) {
			c.Metadata.Driver, c.Metadata.DSN, c.Metadata.WriteLanes = "postgres", "postgres://h/db", 17
		},
		"metadata.writeLanes: -1": func(c *region.Config) {
			c.Metadata.Driver, c.Metadata.DSN, c.Metadata.WriteLanes = "postgres", "postgres://h/db", -1
		},
		"metadata.writeLanes: applies to postgres": func(c *region.Config) { c.Metadata.WriteLanes = 2 },
		"keeps a region on one": func(c *region.Config) {
			c.Content.Driver = "s3"
			c.Content.S3.Bucket = "b"
			c.Content.S3.Endpoint = "http://s3"
		},
		"node:":      func(c *region.Config) { c.Node = "bad node" },
		"content.s3": func(c *region.Config) { c.Content.Driver = "s3" }, // no bucket
	} {
		c := good
		set(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}
