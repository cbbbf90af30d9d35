package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/cost"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/region"
	"github.com/georeg/georeg/internal/webhook"
)

// Exported configuration: what `georeg config export` prints and `config
// apply` takes. Secrets are never in it: a webhook's secret and custom
// header values are ${ENV} references apply reads from its environment;
// tokens get new passwords at apply; users take theirs from
// GEOREG_USER_<NAME>_PASSWORD.
type exported struct {
	APIVersion    string              `yaml:"apiVersion"`
	Replications  []exportedReplica   `yaml:"replications,omitempty"`
	Webhooks      []exportedWebhook   `yaml:"webhooks,omitempty"`
	Retention     *region.Retention   `yaml:"retention,omitempty"`
	SoftDelete    *region.SoftDelete  `yaml:"softDelete,omitempty"`
	AnonymousPull bool                `yaml:"anonymousPull"`
	NetworkRules  *auth.NetworkRules  `yaml:"networkRules,omitempty"`
	ScopeMaps     []exportedScopeMap  `yaml:"scopeMaps,omitempty"`
	Tokens        []mgmtapi.TokenView `yaml:"tokens,omitempty"`
	Users         []string            `yaml:"users,omitempty"`
	Locks         []exportedLock      `yaml:"locks,omitempty"`
	Quotas        []exportedQuota     `yaml:"quotas,omitempty"`
	// Credential sets before the rules that name them; a set's password
	// is an ${ENV} reference apply reads from its environment.
	CredentialSets []exportedCredentialSet `yaml:"credentialSets,omitempty"`
	CacheRules     []exportedCacheRule     `yaml:"cacheRules,omitempty"`
	Prices         *cost.Prices            `yaml:"prices,omitempty"`
	// Encryption says whether the exporting region encrypts at rest.
	Encryption *exportedEncryption `yaml:"encryption,omitempty"`
}

// exportedCredentialSet is a credential set: its password an ${ENV}
// reference.
type exportedCredentialSet struct {
	Name        string `yaml:"name"`
	LoginServer string `yaml:"loginServer"`
	Username    string `yaml:"username"`
	Password    string `yaml:"password"`
}

// exportedCacheRule is a cache rule.
type exportedCacheRule struct {
	Name          string `yaml:"name"`
	Source        string `yaml:"source"`
	Target        string `yaml:"target"`
	CredentialSet string `yaml:"credentialSet,omitempty"`
}

// exportedQuota is a storage quota: scope a repository or * (the registry).
type exportedQuota struct {
	Scope      string `yaml:"scope"`
	LimitBytes int64  `yaml:"limitBytes"`
}

type exportedReplica struct {
	Name                  string `yaml:"name"`
	Endpoint              string `yaml:"endpoint"`
	RegionEndpointEnabled bool   `yaml:"regionEndpointEnabled"`
}

type exportedWebhook struct {
	Name          string            `yaml:"name"`
	URI           string            `yaml:"serviceUri"`
	Actions       []string          `yaml:"actions"`
	Scope         string            `yaml:"scope,omitempty"`
	Status        string            `yaml:"status"`
	Location      string            `yaml:"location,omitempty"`
	Format        string            `yaml:"format"`
	CustomHeaders map[string]string `yaml:"customHeaders,omitempty"`
	Secret        string            `yaml:"secret,omitempty"`
}

type exportedScopeMap struct {
	Name        string   `yaml:"name"`
	Actions     []string `yaml:"actions"`
	Description string   `yaml:"description,omitempty"`
}

type exportedLock struct {
	Name          string `yaml:"name"` // repo or repo:tag
	WriteEnabled  bool   `yaml:"writeEnabled"`
	DeleteEnabled bool   `yaml:"deleteEnabled"`
}

// envName makes an environment variable name of parts.
func envName(parts ...string) string {
	s := strings.ToUpper(strings.Join(parts, "_"))
	return regexp.MustCompile(`[^A-Z0-9_]`).ReplaceAllString(s, "_")
}

// exportedURI is a webhook's service URI as exported: each query value
// (receivers take tokens there: ?token=...) becomes an ${ENV} reference,
// as header values and secrets do.
func exportedURI(hook, uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.RawQuery == "" {
		return uri
	}
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, url.QueryEscape(k)+"=${"+envName("GEOREG_WEBHOOK", hook, "URI", k)+"}")
	}
	u.RawQuery = ""
	return u.String() + "?" + strings.Join(parts, "&")
}

func exportConfig(ctx context.Context, c *cli.Client) (*exported, error) {
	out := &exported{APIVersion: "georeg/v1"}
	var reps []mgmtapi.Replication
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/replications", nil, &reps); err != nil {
		return nil, err
	}
	for _, r := range reps {
		if r.Source == "registered" {
			out.Replications = append(out.Replications, exportedReplica{r.Name, r.Endpoint, r.RegionEndpointEnabled})
		}
	}
	var hooks []webhook.View
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/webhooks", nil, &hooks); err != nil {
		return nil, err
	}
	for _, h := range hooks {
		var cfg mgmtapi.WebhookConfig
		if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/webhooks/"+h.Name+"/config", nil, &cfg); err != nil {
			return nil, err
		}
		w := exportedWebhook{Name: h.Name, URI: exportedURI(h.Name, cfg.URI), Actions: h.Actions, Scope: h.Scope, Status: h.Status, Location: h.Location, Format: h.Format}
		for k := range cfg.Headers {
			if w.CustomHeaders == nil {
				w.CustomHeaders = map[string]string{}
			}
			w.CustomHeaders[k] = "${" + envName("GEOREG_WEBHOOK", h.Name, "HEADER", k) + "}"
		}
		if h.Signed {
			w.Secret = "${" + envName("GEOREG_WEBHOOK", h.Name, "SECRET") + "}"
		}
		out.Webhooks = append(out.Webhooks, w)
	}
	var ret region.Retention
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/policies/retention", nil, &ret); err != nil {
		return nil, err
	}
	out.Retention = &ret
	var sd region.SoftDelete
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/policies/soft-delete", nil, &sd); err != nil {
		return nil, err
	}
	out.SoftDelete = &sd
	var quotas []region.QuotaView
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/policies/quotas", nil, &quotas); err != nil {
		return nil, err
	}
	for _, q := range quotas {
		out.Quotas = append(out.Quotas, exportedQuota{q.Scope, q.LimitBytes})
	}
	var sets []mgmtapi.CredentialSetView
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/credential-sets", nil, &sets); err != nil {
		return nil, err
	}
	for _, cs := range sets {
		out.CredentialSets = append(out.CredentialSets, exportedCredentialSet{cs.Name, cs.LoginServer, cs.Username,
			"${" + envName("GEOREG_CREDENTIAL_SET", cs.Name, "PASSWORD") + "}"})
	}
	var rules []mgmtapi.CacheRuleView
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/cache-rules", nil, &rules); err != nil {
		return nil, err
	}
	for _, r := range rules {
		out.CacheRules = append(out.CacheRules, exportedCacheRule{r.Name, r.Source, r.Target, r.CredentialSet})
	}
	var prices cost.Prices
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/policies/prices", nil, &prices); err != nil {
		return nil, err
	}
	out.Prices = &prices
	var rv mgmtapi.RegistryView
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/registry", nil, &rv); err != nil {
		return nil, err
	}
	out.AnonymousPull, out.NetworkRules = rv.AnonymousPullEnabled, &rv.NetworkRuleSet
	var maps []mgmtapi.ScopeMapView
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/scope-maps", nil, &maps); err != nil {
		return nil, err
	}
	for _, m := range maps {
		out.ScopeMaps = append(out.ScopeMaps, exportedScopeMap{m.Name, m.Actions, m.Description})
	}
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/tokens", nil, &out.Tokens); err != nil {
		return nil, err
	}
	var users []mgmtapi.UserView
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/users", nil, &users); err != nil {
		return nil, err
	}
	for _, u := range users {
		out.Users = append(out.Users, u.Name)
	}
	var locks []mgmtapi.LockView
	if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/locks", nil, &locks); err != nil {
		return nil, err
	}
	for _, l := range locks {
		out.Locks = append(out.Locks, exportedLock{l.Name, l.WriteEnabled, l.DeleteEnabled})
	}
	var err error
	out.Encryption, err = exportEncryption(ctx, c)
	return out, err
}

// expand replaces ${VAR} with the environment's value; a missing one is
// an error naming it.
func expand(s string) (string, error) {
	var missing []string
	v := os.Expand(s, func(k string) string {
		val, ok := os.LookupEnv(k)
		if !ok {
			missing = append(missing, k)
		}
		return val
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("set %s", strings.Join(missing, ", "))
	}
	return v, nil
}

func applyConfig(ctx context.Context, c *cli.Client, cfg *exported) error {
	var notes []string
	for _, r := range cfg.Replications {
		on := r.RegionEndpointEnabled
		if _, err := c.PutReplication(ctx, r.Name, r.Endpoint, &on); err != nil {
			return fmt.Errorf("replication %s: %w", r.Name, err)
		}
	}
	for _, m := range cfg.ScopeMaps {
		err := c.Do(ctx, http.MethodPut, "/_georeg/v1/scope-maps/"+m.Name, auth.ScopeMap{Actions: m.Actions, Description: m.Description}, nil)
		if err != nil && !strings.Contains(err.Error(), "ALREADY_EXISTS") {
			return fmt.Errorf("scope map %s: %w", m.Name, err)
		}
	}
	for _, t := range cfg.Tokens {
		body := mgmtapi.TokenBody{ScopeMap: &t.ScopeMap, Status: &t.Status}
		if t.Expiry != nil {
			e := t.Expiry.Format(time.RFC3339)
			body.Expiry = &e
		}
		var created mgmtapi.TokenCreated
		err := c.Do(ctx, http.MethodPut, "/_georeg/v1/tokens/"+t.Name, body, &created)
		switch {
		case err != nil && strings.Contains(err.Error(), "ALREADY_EXISTS"):
		case err != nil:
			return fmt.Errorf("token %s: %w", t.Name, err)
		default:
			notes = append(notes, fmt.Sprintf("token %s: new password %s (shown once)", t.Name, created.Password))
		}
	}
	for _, u := range cfg.Users {
		pw, ok := os.LookupEnv(envName("GEOREG_USER", u, "PASSWORD"))
		if !ok {
			notes = append(notes, fmt.Sprintf("user %s: skipped; set %s to create it", u, envName("GEOREG_USER", u, "PASSWORD")))
			continue
		}
		err := c.Do(ctx, http.MethodPut, "/_georeg/v1/users/"+u, mgmtapi.UserBody{Password: pw}, nil)
		if err != nil && !strings.Contains(err.Error(), "ALREADY_EXISTS") {
			return fmt.Errorf("user %s: %w", u, err)
		}
	}
	for _, w := range cfg.Webhooks {
		uri, err := expand(w.URI)
		if err != nil {
			return fmt.Errorf("webhook %s uri: %w", w.Name, err)
		}
		body := mgmtapi.WebhookBody{URI: &uri, Actions: w.Actions, Scope: &w.Scope, Status: &w.Status, Location: &w.Location, Format: &w.Format}
		if len(w.CustomHeaders) > 0 {
			body.Headers = map[string]string{}
			for k, v := range w.CustomHeaders {
				val, err := expand(v)
				if err != nil {
					return fmt.Errorf("webhook %s header %s: %w", w.Name, k, err)
				}
				body.Headers[k] = val
			}
		}
		if w.Secret != "" {
			if val, err := expand(w.Secret); err == nil {
				body.Secret = &val
			} else {
				notes = append(notes, fmt.Sprintf("webhook %s: a new secret was generated (%v to keep the old one)", w.Name, err))
			}
		}
		method := http.MethodPut
		if err := c.Do(ctx, http.MethodGet, "/_georeg/v1/webhooks/"+w.Name, nil, nil); err == nil {
			method = http.MethodPatch
		}
		if err := c.Do(ctx, method, "/_georeg/v1/webhooks/"+w.Name, body, nil); err != nil {
			return fmt.Errorf("webhook %s: %w", w.Name, err)
		}
	}
	if cfg.Retention != nil {
		if err := c.Do(ctx, http.MethodPut, "/_georeg/v1/policies/retention", cfg.Retention, nil); err != nil {
			return fmt.Errorf("retention: %w", err)
		}
	}
	if cfg.SoftDelete != nil {
		if err := c.Do(ctx, http.MethodPut, "/_georeg/v1/policies/soft-delete", cfg.SoftDelete, nil); err != nil {
			return fmt.Errorf("soft delete: %w", err)
		}
	}
	for _, q := range cfg.Quotas {
		if err := c.Do(ctx, http.MethodPut, "/_georeg/v1/policies/quotas?scope="+url.QueryEscape(q.Scope), region.Quota{LimitBytes: q.LimitBytes}, nil); err != nil {
			return fmt.Errorf("quota of %s: %w", q.Scope, err)
		}
	}
	skipped := map[string]bool{}
	for _, cs := range cfg.CredentialSets {
		pw, err := expand(cs.Password)
		if err != nil {
			notes = append(notes, fmt.Sprintf("credential set %s: not applied (%v), nor the cache rules that use it", cs.Name, err))
			skipped[cs.Name] = true
			continue
		}
		body := map[string]string{"loginServer": cs.LoginServer, "username": cs.Username, "password": pw}
		if err := c.Do(ctx, http.MethodPut, "/_georeg/v1/credential-sets/"+url.PathEscape(cs.Name), body, nil); err != nil {
			return fmt.Errorf("credential set %s: %w", cs.Name, err)
		}
	}
	for _, r := range cfg.CacheRules {
		if skipped[r.CredentialSet] {
			continue
		}
		body := map[string]string{"source": r.Source, "target": r.Target, "credentialSet": r.CredentialSet}
		if err := c.Do(ctx, http.MethodPut, "/_georeg/v1/cache-rules/"+url.PathEscape(r.Name), body, nil); err != nil {
			return fmt.Errorf("cache rule %s: %w", r.Name, err)
		}
	}
	if cfg.Prices != nil {
		if err := c.Do(ctx, http.MethodPut, "/_georeg/v1/policies/prices", cfg.Prices, nil); err != nil {
			return fmt.Errorf("prices: %w", err)
		}
	}
	rb := mgmtapi.RegistryBody{AnonymousPullEnabled: &cfg.AnonymousPull, NetworkRuleSet: cfg.NetworkRules}
	if err := c.Do(ctx, http.MethodPatch, "/_georeg/v1/registry", rb, nil); err != nil {
		return fmt.Errorf("registry switches: %w", err)
	}
	for _, l := range cfg.Locks {
		repo, tag, _ := strings.Cut(l.Name, ":")
		path := "/_georeg/v1/repository?name=" + url.QueryEscape(repo)
		if tag != "" {
			path += "&image=" + url.QueryEscape(tag)
		}
		w, d := l.WriteEnabled, l.DeleteEnabled
		if err := c.Do(ctx, http.MethodPatch, path, mgmtapi.LockBody{WriteEnabled: &w, DeleteEnabled: &d}, nil); err != nil {
			notes = append(notes, fmt.Sprintf("lock %s: not set (%v); copy the images first, then apply again", l.Name, err))
		}
	}
	for _, n := range notes {
		fmt.Println(n)
	}
	fmt.Println("applied")
	return nil
}

func configExportApply(cmd *cobra.Command, registry *string) {
	export := &cobra.Command{
		Use:   "export > registry.yaml",
		Short: "Print the registry's configuration as YAML (secrets as ${ENV} references, never their values)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := exportConfig(c.Context(), cli.New(*registry, time.Minute))
			if err != nil {
				return err
			}
			enc := yaml.NewEncoder(os.Stdout)
			enc.SetIndent(2)
			return enc.Encode(cfg)
		},
	}
	var file string
	var allowUnencrypted bool
	apply := &cobra.Command{
		Use:   "apply -f registry.yaml",
		Short: "Apply an exported configuration to a registry (run georeg copy first for image locks)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			var cfg exported
			if err := yaml.Unmarshal(b, &cfg); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if cfg.APIVersion != "georeg/v1" {
				return fmt.Errorf("%s: apiVersion %q; this georeg reads georeg/v1", file, cfg.APIVersion)
			}
			client := cli.New(*registry, time.Minute)
			if err := checkEncryption(c.Context(), client, cfg.Encryption, allowUnencrypted); err != nil {
				return err
			}
			return applyConfig(c.Context(), client, &cfg)
		},
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "the exported YAML")
	apply.Flags().BoolVar(&allowUnencrypted, "allow-unencrypted", false, "apply the configuration of a registry that encrypts at rest to a region that does not")
	_ = apply.MarkFlagRequired("file")
	cmd.AddCommand(export, apply)
}
