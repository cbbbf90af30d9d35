// Package config composes every package's Config into the file
// `georeg serve --config region.yaml` reads, applies defaults, and
// validates it, reporting every problem with its field path.
//
//	region:
//	  name: eastus
//	  dataDir: ./data/eastus
//	  maxManifestSize: 4194304
//	  uploadTTL: 24h
//	  node: eastus-a     # unique among the region's nodes (default: host name)
//	  metadata:          # default: SQLite in dataDir
//	    driver: postgres
//	    dsn: postgres://georeg:${PG_PASSWORD}@db:5432/georeg_eastus
//	  content:           # default: the filesystem under dataDir
//	    driver: s3
//	    s3: {endpoint: https://s3.example.com, bucket: georeg-eastus, accessKey: AK, secretKey: ${S3_SECRET}}
//	http:
//	  listen: 127.0.0.1:5001
//	  blobCopy: auto   # auto, sendfile or buffered
//	  tlsCert: cert.pem  # with tlsKey: serve HTTPS
//	  tlsKey: key.pem
//	replication:
//	  secret: s3cr3t   # shared by every region of the registry
//	  peers:
//	    - name: westeurope
//	      endpoint: http://127.0.0.1:5002
//	webhooks:
//	  timeout: 30s     # one delivery attempt
//	  retryFor: 24h    # then an event is marked failed
//	  minBackoff: 1s   # doubling, with jitter, up to maxBackoff
//	  maxBackoff: 10m
//	  keep: 168h       # how long the delivery log keeps finished deliveries
//	auth:
//	  enabled: true    # /v2 and the management API need credentials
//	  service: georeg  # the tokens' audience, the same in every region
//	  adminPasswordFile: ./admin-password   # creates user admin when there is no user
//	  trustedProxies: [10.0.0.5/32]         # front doors, for network rules
//	log:
//	  level: info      # debug, info, warn, error
//	  format: text     # text or json
package config

import (
	"net/netip"
	"time"

	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/peerauth"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/replicate"
	"github.com/georeg/georeg/internal/webhook"
)

// Config is a region node's whole configuration.
type Config struct {
	Region      region.Config   `yaml:"region"`
	HTTP        HTTP            `yaml:"http"`
	Replication Replication     `yaml:"replication"`
	Webhooks    webhook.Options `yaml:"webhooks"`
	Auth        auth.Config     `yaml:"auth"`
	Outbound    Outbound        `yaml:"outbound"`
	Log         Log             `yaml:"log"`
}

// Outbound is what this node may connect to on a user's word (imports,
// webhooks, registered replica endpoints; internal/outbound).
type Outbound struct {
	// Allow lists loopback or private addresses and ranges this node may
	// reach, besides the registry's replicated outbound rules (`georeg
	// outbound-rule add`). Link-local and metadata addresses are never
	// reached.
	Allow []string `yaml:"allow"`
}

// AllowedPrefixes parses Allow (Validate reports what does not parse).
func (o Outbound) AllowedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range o.Allow {
		if p, err := auth.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Replication is how this region talks to its peers.
type Replication struct {
	// Secret authenticates regions to each other (a bearer token on
	// /_georeg/ requests). Every region of a registry has the same one.
	// Empty: this region serves no feed and replicates with nobody.
	Secret string `yaml:"secret"`
	// NoReadThrough turns read-through off: a manifest this region lacks
	// is MANIFEST_UNKNOWN naming the regions that hold it, instead of being
	// fetched from them on demand (the default).
	NoReadThrough bool `yaml:"noReadThrough"`
	// CAFile, when set, is a PEM bundle trusted (besides the system's
	// roots) for peers served over TLS.
	CAFile string `yaml:"caFile"`
	// InsecurePeers lets a region with auth on talk to its peers over
	// plain HTTP: for test rigs on one machine only. Without it, auth on
	// means TLS between regions (region tokens and settings cross there).
	InsecurePeers bool `yaml:"insecurePeers"`
	// Peers and the feed long-poll wait.
	replicate.Config `yaml:",inline"`
}

// HTTP is where the node listens.
type HTTP struct {
	// Listen is host:port; georeg binds loopback unless told otherwise.
	Listen string `yaml:"listen"`
	// BlobCopy is how blob GETs copy bytes: auto (default), sendfile or
	// buffered. See ociapi.CopyAuto for the measurements behind auto.
	BlobCopy string `yaml:"blobCopy"`
	// DataEndpoints makes blob GETs on the API answer 307 to this region's
	// data endpoint, which serves only blob bytes: a front door then never
	// carries them. DataListen is where the data endpoint listens, DataURL
	// its public base URL (default http://DataListen).
	DataEndpoints bool   `yaml:"dataEndpoints"`
	DataListen    string `yaml:"dataListen"`
	DataURL       string `yaml:"dataURL"`
	// BodyIdleTimeout cuts a request body from which no byte arrives for
	// that long (408): a client that stalls mid-upload does not hold a
	// session and a handler for ever (default 30s; a slow client that
	// keeps sending is never cut).
	BodyIdleTimeout time.Duration `yaml:"bodyIdleTimeout"`
	// TLSCert and TLSKey (PEM files) serve HTTPS (HTTP/2 included) on
	// every listener instead of HTTP.
	TLSCert string `yaml:"tlsCert"`
	TLSKey  string `yaml:"tlsKey"`
	// AllowedHosts are the names clients reach this region by, besides IP
	// addresses, localhost and the hosts of replication.endpoint and
	// dataURL. With auth off, the management API answers only these (a
	// guard against DNS rebinding).
	AllowedHosts []string `yaml:"allowedHosts"`
	// MaxUploads and MaxUploadsPerClient bound the uploads streaming into
	// this node at once, in all and per authenticated user, each holding a
	// buffer (default 256 and 32; beyond, 429 with Retry-After).
	MaxUploads          int `yaml:"maxUploads"`
	MaxUploadsPerClient int `yaml:"maxUploadsPerClient"`
}

// Log sets the node's log output.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Default returns the configuration used when no file is given.
func Default() Config {
	return Config{
		Region: region.Config{Name: "eastus", DataDir: "./data"},
		HTTP:   HTTP{Listen: "127.0.0.1:5001"},
		Log:    Log{Level: "info", Format: "text"},
	}
}

// Load reads a YAML file over the defaults. Unknown fields are errors, so a
// typo does not silently fall back to a default. ${NAME} anywhere in the
// file is the environment variable NAME (a secret kept out of the file:
// secretKey: ${S3_SECRET_KEY}); an unset one is an error.
func Load(path string) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	data, err = expandEnv(data)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if err := Parse(data, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces every ${NAME} in the file's values (not its keys or
// comments) with the variable's value. It works on the parsed document and
// writes it out again, so a value may hold anything YAML would otherwise
// read as syntax (a password with '#' or ': ').
func expandEnv(data []byte) ([]byte, error) {
	if !envRef.Match(data) {
		return data, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var missing []string
	var walk func(n *yaml.Node, key bool)
	walk = func(n *yaml.Node, key bool) {
		if n.Kind == yaml.ScalarNode && !key && envRef.MatchString(n.Value) {
			n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
				name := envRef.FindStringSubmatch(m)[1]
				v, ok := os.LookupEnv(name)
				if !ok {
					missing = append(missing, name)
				}
				return v
			})
			// Written out quoted: the value stays this string, whatever it
			// holds. (A reference stands for a string: a number field is
			// written as a number.)
			n.Tag, n.Style = "!!str", yaml.DoubleQuotedStyle
		}
		for i, c := range n.Content {
			walk(c, n.Kind == yaml.MappingNode && i%2 == 0)
		}
	}
	walk(&doc, false)
	if len(missing) > 0 {
		return nil, fmt.Errorf("the file names environment variables that are not set: %s", strings.Join(missing, ", "))
	}
	return yaml.Marshal(&doc)
}

// Parse decodes YAML into c, refusing unknown fields.
func Parse(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // EOF: an empty file
		return err
	}
	return nil
}

// Validate reports every problem in c with its field path.
func (c Config) Validate() error {
	var errs []error
	if err := c.Region.WithDefaults().Validate(); err != nil {
		errs = append(errs, prefix("region", err))
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		errs = append(errs, fmt.Errorf("http.listen: %q: %v", c.HTTP.Listen, err))
	}
	if err := c.Replication.Config.Validate(c.Region.Name); err != nil {
		errs = append(errs, prefix("replication", err))
	}
	if len(c.Replication.Peers) > 0 && c.Replication.Secret == "" {
		errs = append(errs, errors.New("replication.secret: must be set when there are peers"))
	}
	if c.HTTP.MaxUploads < 0 || c.HTTP.MaxUploadsPerClient < 0 {
		errs = append(errs, errors.New("http.maxUploads, http.maxUploadsPerClient: must not be negative"))
	}
	if c.HTTP.DataEndpoints {
		if _, _, err := net.SplitHostPort(c.HTTP.DataListen); err != nil {
			errs = append(errs, fmt.Errorf("http.dataListen: %q: %v (required with dataEndpoints)", c.HTTP.DataListen, err))
		}
	}
	if (c.HTTP.TLSCert == "") != (c.HTTP.TLSKey == "") {
		errs = append(errs, errors.New("http.tlsCert and http.tlsKey: give both or neither"))
	}
	switch c.HTTP.BlobCopy {
	case "", "auto", "sendfile", "buffered":
	default:
		errs = append(errs, fmt.Errorf("http.blobCopy: %q must be auto, sendfile or buffered", c.HTTP.BlobCopy))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, prefix("auth", err))
	}
	if c.Auth.Enabled && c.Replication.Secret == "" {
		errs = append(errs, errors.New("auth.enabled: needs replication.secret (regions and the front door authenticate with it)"))
	} else if c.Auth.Enabled && len(c.Replication.Secret) < peerauth.MinSecretLength {
		errs = append(errs, fmt.Errorf("replication.secret: with auth on, at least %d characters (openssl rand -hex 16 prints one); whoever holds it can join the registry", peerauth.MinSecretLength))
	}
	if c.Auth.Enabled && c.Replication.Secret != "" && !c.Replication.InsecurePeers {
		const why = "with auth on, regions talk over TLS (serve HTTPS with http.tlsCert and http.tlsKey; replication.insecurePeers: true is for test rigs)"
		for i, p := range c.Replication.Peers {
			if !strings.HasPrefix(p.Endpoint, "https://") {
				errs = append(errs, fmt.Errorf("replication.peers[%d].endpoint: %q is not https: %s", i, p.Endpoint, why))
			}
		}
		switch {
		case c.Replication.Endpoint != "" && !strings.HasPrefix(c.Replication.Endpoint, "https://"):
			errs = append(errs, fmt.Errorf("replication.endpoint: %q is not https: %s", c.Replication.Endpoint, why))
		case c.Replication.Endpoint == "" && c.HTTP.TLSCert == "":
			errs = append(errs, fmt.Errorf("http.tlsCert: not set: %s", why))
		}
	}
	for i, s := range c.Outbound.Allow {
		if _, err := auth.ParsePrefix(s); err != nil {
			errs = append(errs, fmt.Errorf("outbound.allow[%d]: %v", i, err))
		}
	}
	if err := c.Webhooks.Validate(); err != nil {
		errs = append(errs, prefix("webhooks", err))
	}
	if _, err := c.Log.SlogLevel(); err != nil {
		errs = append(errs, fmt.Errorf("log.level: %w", err))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format: %q must be text or json", c.Log.Format))
	}
	return errors.Join(errs...)
}

func prefix(path string, err error) error {
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, fmt.Errorf("%s.%w", path, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s.%w", path, err)
}

// SlogLevel parses the level name.
func (l Log) SlogLevel() (slog.Level, error) {
	var lv slog.Level
	err := lv.UnmarshalText([]byte(l.Level))
	return lv, err
}

// Logger builds the logger the configuration asks for, writing to w.
func (l Log) Logger(w *os.File) *slog.Logger {
	lv, _ := l.SlogLevel()
	opts := &slog.HandlerOptions{Level: lv}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
