package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/mgmtapi"
)

// putNamed creates (refused when it exists) or updates (refused when it
// does not) the object name at path with the fields of body, and prints the
// answer: create and update of cache rules and credential sets.
func putNamed[V any](c *cobra.Command, registry, output, what, name, path string, create bool, body map[string]string, header string, rows func(V) [][]string) error {
	client := cli.New(registry, 30*time.Second)
	if err := client.Do(c.Context(), http.MethodGet, path, nil, nil); create && err == nil {
		return fmt.Errorf("%s %s exists; change it with georeg %s update", what, name, c.Parent().Name())
	} else if !create && err != nil {
		return err
	}
	var v V
	if err := client.Do(c.Context(), http.MethodPut, path, body, &v); err != nil {
		return err
	}
	return show(output, v, header, rows(v))
}

// showNamed prints the object at path.
func showNamed[V any](c *cobra.Command, registry, output, path, header string, rows func(V) [][]string) error {
	var v V
	if err := cli.New(registry, 30*time.Second).Do(c.Context(), http.MethodGet, path, nil, &v); err != nil {
		return err
	}
	return show(output, v, header, rows(v))
}

// listNamed prints the objects at path.
func listNamed[V any](c *cobra.Command, registry, output, path, header string, rows func(...V) [][]string) error {
	var vs []V
	if err := cli.New(registry, 30*time.Second).Do(c.Context(), http.MethodGet, path, nil, &vs); err != nil {
		return err
	}
	return show(output, vs, header, rows(vs...))
}

// changed is the body of a create (every field) or an update (the flags
// given): flag name -> JSON field.
func changed(c *cobra.Command, create bool, fields map[string]*string, json map[string]string) map[string]string {
	body := map[string]string{}
	for flag, v := range fields {
		if create || c.Flags().Changed(flag) {
			body[json[flag]] = *v
		}
	}
	return body
}

// cacheRuleCmd is `georeg cache-rule`, as ACR's `az acr cache`.
func cacheRuleCmd() *cobra.Command {
	cmd, registry, output := group("cache-rule", "Artifact cache rules: pull-through of upstream registries (create, update, list, show, delete)")
	var source, target, credSet, revalidate, evict, replicate string
	const path = "/_georeg/v1/cache-rules/"
	header := "NAME\tSOURCE\tTARGET\tCREDENTIAL SET\tREVALIDATE\tEVICT UNTOUCHED\tREPLICATE\tCREATED"
	rows := func(vs ...mgmtapi.CacheRuleView) [][]string {
		var out [][]string
		for _, v := range vs {
			out = append(out, []string{v.Name, v.Source, v.Target, orDash(v.CredentialSet), v.Interval().String(), orDash(v.EvictUntouched), v.Replication(), v.Created.Format(time.RFC3339)})
		}
		return out
	}
	one := func(v mgmtapi.CacheRuleView) [][]string { return rows(v) }
	fields := map[string]*string{"source": &source, "target": &target, "cred-set": &credSet, "revalidate": &revalidate, "evict-untouched": &evict, "replicate": &replicate}
	json := map[string]string{"source": "source", "target": "target", "cred-set": "credentialSet", "revalidate": "revalidate", "evict-untouched": "evictUntouched", "replicate": "replicate"}
	put := func(c *cobra.Command, name string, create bool) error {
		return putNamed(c, *registry, *output, "cache rule", name, path+url.PathEscape(name), create, changed(c, create, fields, json), header, one)
	}
	create := &cobra.Command{
		Use:   "create NAME --source REGISTRY/REPO --target REPO [--cred-set C]",
		Short: "Cache an upstream repository (or every repository under a prefix with /*) as a repository of this registry",
		Long: `A pull of an image the target repository lacks, in any region, fetches it
from the source (verified, whole) and stores it there; it replicates to
the other regions like a push. Wildcards map a prefix: --source
docker.io/library/* --target hub/* makes hub/nginx docker.io/library/nginx.
An http:// source is an upstream without TLS. With --evict-untouched, an
image no region pulled for that long is deleted (the next pull fetches it
again); retention's runs apply it. With --replicate on-demand, a cached
image's manifests and tags reach every region but its layers stay in the
region that fetched it: another region fetches a layer from a region
holding it (else the upstream) when a client first pulls it there.`,
		Example: `  georeg cache-rule create --name hub-nginx --source docker.io/library/nginx --target hub/nginx
  georeg cache-rule create --name hub --source docker.io/library/* --target hub/* --cred-set hub
  georeg cache-rule update hub --evict-untouched 720h
  georeg cache-rule update hub --replicate on-demand`,
		RunE: func(c *cobra.Command, args []string) error { return put(c, args[0], true) },
	}
	update := &cobra.Command{
		Use: "update NAME [--source S] [--target T] [--cred-set C] [--revalidate D] [--evict-untouched D] [--replicate all|on-demand]", Short: "Change a cache rule",
		RunE: func(c *cobra.Command, args []string) error { return put(c, args[0], false) },
	}
	for _, c := range []*cobra.Command{create, update} {
		c.Flags().StringVar(&source, "source", "", "the upstream repository: registry/repository, or registry/prefix/*")
		c.Flags().StringVar(&target, "target", "", "this registry's repository, or prefix/*")
		c.Flags().StringVar(&credSet, "cred-set", "", "the credential set to log in to the upstream with")
		c.Flags().StringVar(&revalidate, "revalidate", "", "how often a cached tag is checked upstream when pulled (default 1h)")
		c.Flags().StringVar(&evict, "evict-untouched", "", "evict a cached image no region pulled for this long, such as 720h (default: never; \"\" on update: never again)")
		c.Flags().StringVar(&replicate, "replicate", "", "where a cached image's layers go: all (every region, the default) or on-demand (the regions that pull it)")
	}
	list := &cobra.Command{
		Use: "list", Short: "List the cache rules", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return listNamed(c, *registry, *output, "/_georeg/v1/cache-rules", header, rows)
		},
	}
	showCmd := &cobra.Command{
		Use: "show NAME", Short: "Show a cache rule",
		RunE: func(c *cobra.Command, args []string) error {
			return showNamed(c, *registry, *output, path+url.PathEscape(args[0]), header, one)
		},
	}
	cmd.AddCommand(create, update, list, showCmd, deleteCmd("cache rule", path, registry))
	return cmd
}

// credentialSetCmd is `georeg credential-set`: how cache rules log in to
// upstreams.
func credentialSetCmd() *cobra.Command {
	cmd, registry, output := group("credential-set", "Credentials cache rules log in to upstream registries with (create, update, list, show, delete)")
	var server, user, passwordEnv string
	const path = "/_georeg/v1/credential-sets/"
	header := "NAME\tLOGIN SERVER\tUSERNAME\tPASSWORD\tCREATED"
	rows := func(vs ...mgmtapi.CredentialSetView) [][]string {
		var out [][]string
		for _, v := range vs {
			pw := "(none)"
			if v.PasswordSet {
				pw = "(set)"
			}
			out = append(out, []string{v.Name, v.LoginServer, v.Username, pw, v.Created.Format(time.RFC3339)})
		}
		return out
	}
	one := func(v mgmtapi.CredentialSetView) [][]string { return rows(v) }
	put := func(c *cobra.Command, name string, create bool) error {
		body := changed(c, create, map[string]*string{"login-server": &server, "username": &user},
			map[string]string{"login-server": "loginServer", "username": "username"})
		if create || c.Flags().Changed("password-env") {
			pw, ok := os.LookupEnv(passwordEnv)
			if passwordEnv == "" || !ok {
				return fmt.Errorf("--password-env %q: name an environment variable holding the password (it is never given on the command line)", passwordEnv)
			}
			body["password"] = pw
		}
		return putNamed(c, *registry, *output, "credential set", name, path+url.PathEscape(name), create, body, header, one)
	}
	create := &cobra.Command{
		Use:     "create NAME --login-server HOST --username U --password-env VAR",
		Short:   "Create a credential set (the password is read from an environment variable)",
		Example: `  HUB_TOKEN=... georeg credential-set create --name hub --login-server docker.io --username me --password-env HUB_TOKEN`,
		RunE:    func(c *cobra.Command, args []string) error { return put(c, args[0], true) },
	}
	update := &cobra.Command{
		Use: "update NAME [--login-server HOST] [--username U] [--password-env VAR]", Short: "Change a credential set",
		RunE: func(c *cobra.Command, args []string) error { return put(c, args[0], false) },
	}
	for _, c := range []*cobra.Command{create, update} {
		c.Flags().StringVar(&server, "login-server", "", "the upstream's host: docker.io, ghcr.io...")
		c.Flags().StringVar(&user, "username", "", "the user name")
		c.Flags().StringVar(&passwordEnv, "password-env", "", "the environment variable holding the password or token")
	}
	list := &cobra.Command{
		Use: "list", Short: "List the credential sets (never their passwords)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return listNamed(c, *registry, *output, "/_georeg/v1/credential-sets", header, rows)
		},
	}
	showCmd := &cobra.Command{
		Use: "show NAME", Short: "Show a credential set (never its password)",
		RunE: func(c *cobra.Command, args []string) error {
			return showNamed(c, *registry, *output, path+url.PathEscape(args[0]), header, one)
		},
	}
	cmd.AddCommand(create, update, list, showCmd, deleteCmd("credential set", path, registry))
	return cmd
}

// cacheCmd is `georeg cache refresh`.
func cacheCmd() *cobra.Command {
	cmd, registry, output := group("cache", "The artifact cache: refresh a cached tag now")
	var image string
	refresh := &cobra.Command{
		Use:     "refresh --image REPO:TAG",
		Short:   "Check a cached tag against its upstream now; a moved tag is fetched and moved in every region",
		Example: `  georeg cache refresh --image hub/nginx:latest`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			repo, tag, ok := strings.Cut(image, ":")
			if !ok || repo == "" || tag == "" {
				return fmt.Errorf("--image %q: give repository:tag", image)
			}
			var r mgmtapi.Refreshed
			path := "/_georeg/v1/cache/refresh?repository=" + url.QueryEscape(repo) + "&tag=" + url.QueryEscape(tag)
			if err := cli.New(*registry, 10*time.Minute).Do(c.Context(), http.MethodPost, path, nil, &r); err != nil {
				return err
			}
			return show(*output, r, "REPOSITORY\tTAG\tDIGEST\tCHANGED\tREGION", [][]string{{r.Repository, r.Tag, r.Digest, fmt.Sprint(r.Changed), r.Region}})
		},
	}
	refresh.Flags().StringVar(&image, "image", "", "the cached tag: repository:tag")
	cmd.AddCommand(refresh)
	return cmd
}
