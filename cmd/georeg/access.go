package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/auth"
	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/mgmtapi"
)

// accessCmds are the commands of access control: login, user, token,
// scope-map, network-rule and update (registry switches), mirroring
// `az acr login`, `az acr token`, `az acr scope-map`, `az acr
// network-rule` and `az acr update`.
func accessCmds() []*cobra.Command {
	return []*cobra.Command{loginCmd(), userCmd(), tokenCmd(), scopeMapCmd(), networkRuleCmd(), outboundRuleCmd(), keysCmd(), updateCmd(), auditCmd(), gcCmd(), repositoryCmd(), manifestCmd(), configCmd(), importCmd(), copyCmd(), usageCmd(), cacheRuleCmd(), credentialSetCmd(), cacheCmd(), encryptionCmd()}
}

// group makes a command group with the --registry and --output flags.
func group(use, short string) (*cobra.Command, *string, *string) {
	var registry, output string
	cmd := &cobra.Command{Use: use, Short: short}
	cmd.PersistentFlags().StringVarP(&registry, "registry", "r", cli.Registry(), "registry (any region) to ask")
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", cli.OutputHelp)
	return cmd, &registry, &output
}

// show prints v in the --output format (a table: header and rows),
// after the global --query.
func show(output string, v any, header string, rows [][]string) error {
	return cli.Render(os.Stdout, output, query, v, header, rows)
}

// custom reports whether a printer's own table or tsv applies: the
// format is one of them and no --query reshapes the answer.
func custom(output string) bool {
	return query == "" && (output == "table" || output == "tsv")
}

// rows returns where a printer's own table or tsv goes: a tabwriter that
// aligns columns for a table, standard output itself for tsv (one tab
// between fields, nothing padded, for cut and awk). Call flush at the end.
func rows(output string) (w io.Writer, flush func() error) {
	if output == "tsv" {
		return os.Stdout, func() error { return nil }
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	return tw, tw.Flush
}

func loginCmd() *cobra.Command {
	var user, password, caFile, saveAs string
	var stdin bool
	cmd := &cobra.Command{
		Use:   "login [REGISTRY] -u USER (-p PASSWORD | --password-stdin) [--ca-file CA] [--save-as NAME]",
		Short: "Check credentials and store them in the docker config, for georeg, docker, crane and regctl",
		Long: `Check credentials and store them in the docker config for the registry and,
when the registry lists them (to an admin), each region's own endpoint. The
registry (with its scheme) and its CA are remembered: later georeg commands
ask it without --registry. A loopback HTTPS registry without --ca-file is
trusted through georeg up's CA in ./georeg-data/tls/ca.pem when it is there.`,
		Example: `  georeg login https://127.0.0.1:5000 -u admin --password-stdin < georeg-data/admin-password
  georeg login https://registry.example.com --ca-file corp-ca.pem -u ci-bot -p "$TOKEN_PASSWORD" --save-as prod
  georeg replication list -r prod`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			registry := cli.Registry()
			if len(args) == 1 {
				registry = cli.NormalizeRegistry(args[0])
			}
			if stdin {
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("read the password from stdin: %w", err)
				}
				password = strings.TrimSpace(line)
			}
			if user == "" || password == "" {
				return errors.New("give -u and -p (or --password-stdin)")
			}
			path, helper, hosts, err := cli.Login(cmd.Context(), registry, user, password, caFile)
			if err != nil {
				return err
			}
			fmt.Printf("Login Succeeded: credentials of %s for %s stored in %s; georeg commands now ask %s\n", user, strings.Join(hosts, ", "), path, registry)
			if saveAs != "" {
				if err := cli.SaveName(saveAs, registry); err != nil {
					return err
				}
				fmt.Printf("Saved as %s: --registry %s (or -r %s) asks %s\n", saveAs, saveAs, saveAs, registry)
			}
			if helper != "" {
				fmt.Fprintf(os.Stderr, "note: %s names the credential helper %q: docker, and clients that follow its config such as crane, ask the helper rather than the entry stored here; georeg's own commands read the entry. Log in with docker login %s too.\n", path, helper, registry)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "user or token name")
	cmd.Flags().StringVarP(&password, "password", "p", "", "password (prefer --password-stdin)")
	cmd.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from stdin")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "PEM CA that signs the registry's certificate (remembered for later commands)")
	cmd.Flags().StringVar(&saveAs, "save-as", "", "also remember the registry under this name, for --registry NAME")
	return cmd
}

func userCmd() *cobra.Command {
	cmd, registry, output := group("user", "Admin users: create, list, delete")
	var password string
	var stdin bool
	create := &cobra.Command{
		Use: "create NAME (--password P | --password-stdin)", Short: "Create an admin user", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if stdin {
				line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
				password = strings.TrimSpace(line)
			}
			var v mgmtapi.UserView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodPut, "/_georeg/v1/users/"+url.PathEscape(args[0]), mgmtapi.UserBody{Password: password}, &v); err != nil {
				return err
			}
			return show(*output, v, "NAME\tCREATED", [][]string{{v.Name, v.Created.Format(time.RFC3339)}})
		},
	}
	create.Flags().StringVar(&password, "password", "", "8 to 72 characters")
	create.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from stdin")
	list := &cobra.Command{
		Use: "list", Short: "List admin users", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var vs []mgmtapi.UserView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/users", nil, &vs); err != nil {
				return err
			}
			var rows [][]string
			for _, v := range vs {
				rows = append(rows, []string{v.Name, v.Created.Format(time.RFC3339)})
			}
			return show(*output, vs, "NAME\tCREATED", rows)
		},
	}
	del := deleteCmd("user", "/_georeg/v1/users/", registry)
	cmd.AddCommand(create, list, del)
	return cmd
}

func deleteCmd(what, path string, registry *string) *cobra.Command {
	return &cobra.Command{
		Use: "delete NAME", Short: "Delete a " + what, Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodDelete, path+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Printf("deleted %s %s\n", what, args[0])
			return nil
		},
	}
}

func tokenRows(ts ...mgmtapi.TokenView) [][]string {
	var rows [][]string
	for _, t := range ts {
		exp := "never"
		if t.Expiry != nil {
			exp = t.Expiry.Format(time.RFC3339)
		}
		rows = append(rows, []string{t.Name, t.ScopeMap, t.Status, exp, t.Created.Format(time.RFC3339)})
	}
	return rows
}

const tokenHeader = "NAME\tSCOPE MAP\tSTATUS\tEXPIRES\tCREATED"

func tokenCmd() *cobra.Command {
	cmd, registry, output := group("token", "Repository-scoped tokens: create, list, show, update, delete")
	var scopeMap, status string
	var expiration time.Duration
	var expires string
	body := func(c *cobra.Command) mgmtapi.TokenBody {
		var b mgmtapi.TokenBody
		if c.Flags().Changed("scope-map") {
			b.ScopeMap = &scopeMap
		}
		if c.Flags().Changed("status") {
			b.Status = &status
		}
		switch {
		case c.Flags().Changed("expiration"):
			e := time.Now().Add(expiration).UTC().Format(time.RFC3339)
			b.Expiry = &e
		case c.Flags().Changed("expiration-date"):
			b.Expiry = &expires
		}
		return b
	}
	flags := func(c *cobra.Command) {
		c.Flags().StringVar(&scopeMap, "scope-map", "", "the scope map that says what the token may do")
		c.Flags().StringVar(&status, "status", "", "enabled or disabled")
		c.Flags().DurationVar(&expiration, "expiration", 0, "valid for this long from now, e.g. 720h")
		c.Flags().StringVar(&expires, "expiration-date", "", "valid until this RFC 3339 time (\"\" on update: never expires)")
	}
	create := &cobra.Command{
		Use:     "create NAME --scope-map MAP [--expiration D]",
		Short:   "Create a token; prints its password once",
		Example: `  georeg token create ci-push --scope-map app-writer --expiration 720h`,
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if scopeMap == "" {
				return errors.New("--scope-map is required")
			}
			var t mgmtapi.TokenCreated
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodPut, "/_georeg/v1/tokens/"+url.PathEscape(args[0]), body(c), &t); err != nil {
				return err
			}
			if !custom(*output) { // the password is in the answer
				return show(*output, t, "", nil)
			}
			if err := show(*output, t, tokenHeader, tokenRows(t.TokenView)); err != nil {
				return err
			}
			fmt.Printf("\npassword: %s\nLog in with: georeg login %s -u %s --password-stdin. This is the only time it is shown.\n", t.Password, *registry, t.Name)
			return nil
		},
	}
	flags(create)
	update := &cobra.Command{
		Use: "update NAME [--status S] [--scope-map M] [--expiration D]", Short: "Change a token", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var t mgmtapi.TokenView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodPatch, "/_georeg/v1/tokens/"+url.PathEscape(args[0]), body(c), &t); err != nil {
				return err
			}
			return show(*output, t, tokenHeader, tokenRows(t))
		},
	}
	flags(update)
	list := &cobra.Command{
		Use: "list", Short: "List tokens", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var ts []mgmtapi.TokenView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/tokens", nil, &ts); err != nil {
				return err
			}
			return show(*output, ts, tokenHeader, tokenRows(ts...))
		},
	}
	showCmd := &cobra.Command{
		Use: "show NAME", Short: "Show a token (never its password)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var t mgmtapi.TokenView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/tokens/"+url.PathEscape(args[0]), nil, &t); err != nil {
				return err
			}
			return show(*output, t, tokenHeader, tokenRows(t))
		},
	}
	cmd.AddCommand(create, list, showCmd, update, deleteCmd("token", "/_georeg/v1/tokens/", registry))
	return cmd
}

func scopeMapRows(ms ...mgmtapi.ScopeMapView) [][]string {
	var rows [][]string
	for _, m := range ms {
		rows = append(rows, []string{m.Name, strings.Join(m.Actions, " "), m.Description})
	}
	return rows
}

func scopeMapCmd() *cobra.Command {
	cmd, registry, output := group("scope-map", "Scope maps (repository patterns x actions): create, list, show, delete")
	var repos []string
	var description string
	create := &cobra.Command{
		Use:   "create NAME --repository PATTERN=ACTION[,ACTION...] ...",
		Short: "Create a scope map",
		Long: "Create a scope map. Actions: content/read (pull), content/write (push), content/delete,\n" +
			"metadata/read (tags, and the catalog with pattern *), metadata/write. Patterns use * for any run of characters.",
		Example: `  georeg scope-map create app-writer --repository 'app/*=content/read,content/write' --repository 'base=content/read'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			m := auth.ScopeMap{Description: description}
			for _, r := range repos {
				pattern, actions, ok := strings.Cut(r, "=")
				if !ok {
					return fmt.Errorf("--repository %q: give PATTERN=ACTION[,ACTION...]", r)
				}
				for _, a := range strings.Split(actions, ",") {
					m.Actions = append(m.Actions, "repositories/"+pattern+"/"+strings.TrimSpace(a))
				}
			}
			var v mgmtapi.ScopeMapView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodPut, "/_georeg/v1/scope-maps/"+url.PathEscape(args[0]), m, &v); err != nil {
				return err
			}
			return show(*output, v, "NAME\tACTIONS\tDESCRIPTION", scopeMapRows(v))
		},
	}
	create.Flags().StringArrayVar(&repos, "repository", nil, "PATTERN=ACTION[,ACTION...] (repeat)")
	create.Flags().StringVar(&description, "description", "", "what it is for")
	list := &cobra.Command{
		Use: "list", Short: "List scope maps", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var ms []mgmtapi.ScopeMapView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/scope-maps", nil, &ms); err != nil {
				return err
			}
			return show(*output, ms, "NAME\tACTIONS\tDESCRIPTION", scopeMapRows(ms...))
		},
	}
	showCmd := &cobra.Command{
		Use: "show NAME", Short: "Show a scope map", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var m mgmtapi.ScopeMapView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/scope-maps/"+url.PathEscape(args[0]), nil, &m); err != nil {
				return err
			}
			return show(*output, m, "NAME\tACTIONS\tDESCRIPTION", scopeMapRows(m))
		},
	}
	cmd.AddCommand(create, list, showCmd, deleteCmd("scope map", "/_georeg/v1/scope-maps/", registry))
	return cmd
}

func registryRows(v mgmtapi.RegistryView) [][]string {
	rows := [][]string{{"anonymous pull", fmt.Sprint(v.AnonymousPullEnabled)}, {"network default action", v.NetworkRuleSet.DefaultAction}}
	for _, r := range v.NetworkRuleSet.IPRules {
		rows = append(rows, []string{"network rule", r.Action + " " + r.Value})
	}
	return rows
}

// changeRule is the RunE of `network-rule` and `outbound-rule` add and
// remove: it reads the registry's switches (of *registry, read when it
// runs), has edit make the change of them for the prefix *ip, sends it,
// and has done print the answer.
func changeRule(registry, ip *string, edit func(mgmtapi.RegistryView, netip.Prefix) (mgmtapi.RegistryBody, error),
	done func(mgmtapi.RegistryView) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, _ []string) error {
		p, err := auth.ParsePrefix(*ip)
		if err != nil {
			return fmt.Errorf("--ip-address: %w", err)
		}
		client := cli.New(*registry, 30*time.Second)
		var v mgmtapi.RegistryView
		if err := client.Do(c.Context(), http.MethodGet, "/_georeg/v1/registry", nil, &v); err != nil {
			return err
		}
		body, err := edit(v, p)
		if err != nil {
			return err
		}
		if err := client.Do(c.Context(), http.MethodPatch, "/_georeg/v1/registry", body, &v); err != nil {
			return err
		}
		return done(v)
	}
}

// withoutPrefix returns the rules of list whose value (value(r)) is not
// the prefix p (or does not parse), in order.
func withoutPrefix[T any](list []T, p netip.Prefix, value func(T) string) []T {
	kept := []T{}
	for _, r := range list {
		if q, err := auth.ParsePrefix(value(r)); err != nil || q != p {
			kept = append(kept, r)
		}
	}
	return kept
}

// outboundRuleCmd manages the loopback and private ranges imports,
// webhooks and replica endpoints may reach (internal/outbound).
func outboundRuleCmd() *cobra.Command {
	cmd, registry, output := group("outbound-rule", "Outbound rules: the loopback and private ranges imports, webhooks and replica endpoints may reach")
	var ip string
	change := func(add bool) func(c *cobra.Command, _ []string) error {
		return changeRule(registry, &ip, func(v mgmtapi.RegistryView, p netip.Prefix) (mgmtapi.RegistryBody, error) {
			kept := withoutPrefix(v.OutboundRules, p, func(r string) string { return r })
			if add {
				kept = append(kept, p.String())
			} else if len(kept) == len(v.OutboundRules) {
				return mgmtapi.RegistryBody{}, fmt.Errorf("there is no outbound rule for %s", p)
			}
			return mgmtapi.RegistryBody{OutboundRules: &kept}, nil
		}, func(v mgmtapi.RegistryView) error { return show(*output, v.OutboundRules, "ALLOWED", outboundRows(v)) })
	}
	add := &cobra.Command{Use: "add --ip-address ADDR|CIDR", Short: "Let regions reach a loopback or private address or range", Args: cobra.NoArgs, RunE: change(true),
		Example: `  georeg outbound-rule add --ip-address 10.20.0.0/16   # an internal registry to import from`}
	remove := &cobra.Command{Use: "remove --ip-address ADDR|CIDR", Short: "Remove an allowed address or range", Args: cobra.NoArgs, RunE: change(false)}
	for _, c := range []*cobra.Command{add, remove} {
		c.Flags().StringVar(&ip, "ip-address", "", "IPv4 or IPv6 address or CIDR range")
		_ = c.MarkFlagRequired("ip-address")
	}
	list := &cobra.Command{
		Use: "list", Short: "Show the outbound rules", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var v mgmtapi.RegistryView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/registry", nil, &v); err != nil {
				return err
			}
			return show(*output, v.OutboundRules, "ALLOWED", outboundRows(v))
		},
	}
	cmd.AddCommand(add, remove, list)
	return cmd
}

func outboundRows(v mgmtapi.RegistryView) [][]string {
	rows := [][]string{}
	for _, r := range v.OutboundRules {
		rows = append(rows, []string{r})
	}
	return rows
}

func networkRuleCmd() *cobra.Command {
	cmd, registry, output := group("network-rule", "Network rules: add, remove, list (the default action is set with georeg update --default-action)")
	var ip string
	var force bool
	change := func(add bool) func(c *cobra.Command, _ []string) error {
		return changeRule(registry, &ip, func(v mgmtapi.RegistryView, p netip.Prefix) (mgmtapi.RegistryBody, error) {
			rules := v.NetworkRuleSet
			kept := withoutPrefix(rules.IPRules, p, func(r auth.IPRule) string { return r.Value })
			if add {
				kept = append(kept, auth.IPRule{Action: auth.Allow, Value: p.String()})
			} else if len(kept) == len(rules.IPRules) {
				return mgmtapi.RegistryBody{}, fmt.Errorf("there is no rule for %s", p)
			}
			rules.IPRules = kept
			return mgmtapi.RegistryBody{NetworkRuleSet: &rules, Force: force}, nil
		}, func(v mgmtapi.RegistryView) error { return show(*output, v, "SETTING\tVALUE", registryRows(v)) })
	}
	add := &cobra.Command{Use: "add --ip-address ADDR|CIDR", Short: "Allow an address or range", Args: cobra.NoArgs, RunE: change(true)}
	remove := &cobra.Command{Use: "remove --ip-address ADDR|CIDR", Short: "Remove an allowed address or range", Args: cobra.NoArgs, RunE: change(false)}
	for _, c := range []*cobra.Command{add, remove} {
		c.Flags().StringVar(&ip, "ip-address", "", "IPv4 or IPv6 address or CIDR range")
		_ = c.MarkFlagRequired("ip-address")
		c.Flags().BoolVar(&force, "force", false, "apply rules that deny your own address")
	}
	list := &cobra.Command{
		Use: "list", Short: "Show the network rules", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var v mgmtapi.RegistryView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/registry", nil, &v); err != nil {
				return err
			}
			return show(*output, v.NetworkRuleSet, "SETTING\tVALUE", registryRows(v)[1:])
		},
	}
	cmd.AddCommand(add, remove, list)
	return cmd
}

func updateCmd() *cobra.Command {
	var registry, output, defaultAction, anonymous string
	var force bool
	cmd := &cobra.Command{
		Use:   "update [--anonymous-pull-enabled true|false] [--default-action Allow|Deny] [--force]",
		Short: "Change the registry's switches: anonymous pull, the network rules' default action",
		Long: `Change the registry's switches. A default action of Deny that would deny
your own address is refused unless --force: allow your address first with
georeg network-rule add. From this machine's loopback the management API is
never denied, and georeg serve --reset-network-rules opens the rules again.`,
		Example: `  georeg network-rule add --ip-address 10.1.0.0/16
  georeg network-rule add --ip-address 127.0.0.1
  georeg update --default-action Deny   # only the addresses added get in`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			client := cli.New(registry, 30*time.Second)
			var body mgmtapi.RegistryBody
			if c.Flags().Changed("anonymous-pull-enabled") {
				on := anonymous == "true"
				if anonymous != "true" && anonymous != "false" {
					return fmt.Errorf("--anonymous-pull-enabled %q: true or false", anonymous)
				}
				body.AnonymousPullEnabled = &on
			}
			if c.Flags().Changed("default-action") {
				var v mgmtapi.RegistryView
				if err := client.Do(c.Context(), http.MethodGet, "/_georeg/v1/registry", nil, &v); err != nil {
					return err
				}
				v.NetworkRuleSet.DefaultAction = defaultAction
				body.NetworkRuleSet = &v.NetworkRuleSet
				body.Force = force
			}
			var v mgmtapi.RegistryView
			if err := client.Do(c.Context(), http.MethodPatch, "/_georeg/v1/registry", body, &v); err != nil {
				return err
			}
			return show(output, v, "SETTING\tVALUE", registryRows(v))
		},
	}
	cmd.Flags().StringVarP(&registry, "registry", "r", cli.Registry(), "registry (any region) to ask")
	cmd.Flags().StringVarP(&output, "output", "o", "table", cli.OutputHelp)
	cmd.Flags().StringVar(&anonymous, "anonymous-pull-enabled", "", "true or false")
	cmd.Flags().StringVar(&defaultAction, "default-action", "", "Allow or Deny")
	cmd.Flags().BoolVar(&force, "force", false, "apply a default action that denies your own address")
	return cmd
}
