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

// cacheRuleCmd is `georeg cache-rule`, as ACR's `az acr cache`.
func cacheRuleCmd() *cobra.Command {
	cmd, registry, output := group("cache-rule", "Artifact cache rules: pull-through of upstream registries (create, update, list, show, delete)")
	var name, source, target, credSet, revalidate string
	header := "NAME\tSOURCE\tTARGET\tCREDENTIAL SET\tREVALIDATE\tCREATED"
	rows := func(vs ...mgmtapi.CacheRuleView) [][]string {
		var out [][]string
		for _, v := range vs {
			out = append(out, []string{v.Name, v.Source, v.Target, orDash(v.CredentialSet), v.Interval().String(), v.Created.Format(time.RFC3339)})
		}
		return out
	}
	need := func() error {
		if name == "" {
			return fmt.Errorf("--name is required")
		}
		return nil
	}
	put := func(c *cobra.Command, create bool) error {
		if err := need(); err != nil {
			return err
		}
		body := map[string]string{}
		if create || c.Flags().Changed("source") {
			body["source"] = source
		}
		if create || c.Flags().Changed("target") {
			body["target"] = target
		}
		if create || c.Flags().Changed("cred-set") {
			body["credentialSet"] = credSet
		}
		if create || c.Flags().Changed("revalidate") {
			body["revalidate"] = revalidate
		}
		client := cli.New(*registry, 30*time.Second)
		path := "/_georeg/v1/cache-rules/" + url.PathEscape(name)
		if create {
			if err := client.Do(c.Context(), http.MethodGet, path, nil, nil); err == nil {
				return fmt.Errorf("cache rule %s exists; change it with georeg cache-rule update", name)
			}
		} else if err := client.Do(c.Context(), http.MethodGet, path, nil, nil); err != nil {
			return err
		}
		var v mgmtapi.CacheRuleView
		if err := client.Do(c.Context(), http.MethodPut, path, body, &v); err != nil {
			return err
		}
		return show(*output, v, header, rows(v))
	}
	create := &cobra.Command{
		Use:   "create --name N --source REGISTRY/REPO --target REPO [--cred-set C]",
		Short: "Cache an upstream repository (or every repository under a prefix with /*) as a repository of this registry",
		Long: `A pull of an image the target repository lacks, in any region, fetches it
from the source (verified, whole) and stores it there; it replicates to
the other regions like a push. Wildcards map a prefix: --source
docker.io/library/* --target hub/* makes hub/nginx docker.io/library/nginx.
An http:// source is an upstream without TLS.`,
		Example: `  georeg cache-rule create --name hub-nginx --source docker.io/library/nginx --target hub/nginx
  georeg cache-rule create --name hub --source docker.io/library/* --target hub/* --cred-set hub`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return put(c, true) },
	}
	update := &cobra.Command{
		Use: "update --name N [--source S] [--target T] [--cred-set C]", Short: "Change a cache rule", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return put(c, false) },
	}
	for _, c := range []*cobra.Command{create, update} {
		c.Flags().StringVarP(&name, "name", "n", "", "the rule's name")
		c.Flags().StringVar(&source, "source", "", "the upstream repository: registry/repository, or registry/prefix/*")
		c.Flags().StringVar(&target, "target", "", "this registry's repository, or prefix/*")
		c.Flags().StringVar(&credSet, "cred-set", "", "the credential set to log in to the upstream with")
		c.Flags().StringVar(&revalidate, "revalidate", "", "how often a cached tag is checked upstream when pulled (default 1h)")
	}
	list := &cobra.Command{
		Use: "list", Short: "List the cache rules", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var vs []mgmtapi.CacheRuleView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/cache-rules", nil, &vs); err != nil {
				return err
			}
			return show(*output, vs, header, rows(vs...))
		},
	}
	showCmd := &cobra.Command{
		Use: "show --name N", Short: "Show a cache rule", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			var v mgmtapi.CacheRuleView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/cache-rules/"+url.PathEscape(name), nil, &v); err != nil {
				return err
			}
			return show(*output, v, header, rows(v))
		},
	}
	del := &cobra.Command{
		Use: "delete --name N", Short: "Delete a cache rule (what it cached stays)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			return cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodDelete, "/_georeg/v1/cache-rules/"+url.PathEscape(name), nil, nil)
		},
	}
	for _, c := range []*cobra.Command{showCmd, del} {
		c.Flags().StringVarP(&name, "name", "n", "", "the rule's name")
	}
	cmd.AddCommand(create, update, list, showCmd, del)
	return cmd
}

// credentialSetCmd is `georeg credential-set`: how cache rules log in to
// upstreams.
func credentialSetCmd() *cobra.Command {
	cmd, registry, output := group("credential-set", "Credentials cache rules log in to upstream registries with (create, update, list, show, delete)")
	var name, server, user, passwordEnv string
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
	need := func() error {
		if name == "" {
			return fmt.Errorf("--name is required")
		}
		return nil
	}
	put := func(c *cobra.Command, create bool) error {
		if err := need(); err != nil {
			return err
		}
		body := map[string]string{}
		if create || c.Flags().Changed("login-server") {
			body["loginServer"] = server
		}
		if create || c.Flags().Changed("username") {
			body["username"] = user
		}
		if create || c.Flags().Changed("password-env") {
			pw, ok := os.LookupEnv(passwordEnv)
			if passwordEnv == "" || !ok {
				return fmt.Errorf("--password-env %q: name an environment variable holding the password (it is never given on the command line)", passwordEnv)
			}
			body["password"] = pw
		}
		client := cli.New(*registry, 30*time.Second)
		path := "/_georeg/v1/credential-sets/" + url.PathEscape(name)
		if create {
			if err := client.Do(c.Context(), http.MethodGet, path, nil, nil); err == nil {
				return fmt.Errorf("credential set %s exists; change it with georeg credential-set update", name)
			}
		} else if err := client.Do(c.Context(), http.MethodGet, path, nil, nil); err != nil {
			return err
		}
		var v mgmtapi.CredentialSetView
		if err := client.Do(c.Context(), http.MethodPut, path, body, &v); err != nil {
			return err
		}
		return show(*output, v, header, rows(v))
	}
	create := &cobra.Command{
		Use:     "create --name N --login-server HOST --username U --password-env VAR",
		Short:   "Create a credential set (the password is read from an environment variable)",
		Example: `  HUB_TOKEN=... georeg credential-set create --name hub --login-server docker.io --username me --password-env HUB_TOKEN`,
		Args:    cobra.NoArgs,
		RunE:    func(c *cobra.Command, _ []string) error { return put(c, true) },
	}
	update := &cobra.Command{
		Use: "update --name N [--login-server HOST] [--username U] [--password-env VAR]", Short: "Change a credential set", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return put(c, false) },
	}
	for _, c := range []*cobra.Command{create, update} {
		c.Flags().StringVarP(&name, "name", "n", "", "the set's name")
		c.Flags().StringVar(&server, "login-server", "", "the upstream's host: docker.io, ghcr.io...")
		c.Flags().StringVar(&user, "username", "", "the user name")
		c.Flags().StringVar(&passwordEnv, "password-env", "", "the environment variable holding the password or token")
	}
	list := &cobra.Command{
		Use: "list", Short: "List the credential sets (never their passwords)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var vs []mgmtapi.CredentialSetView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/credential-sets", nil, &vs); err != nil {
				return err
			}
			return show(*output, vs, header, rows(vs...))
		},
	}
	showCmd := &cobra.Command{
		Use: "show --name N", Short: "Show a credential set (never its password)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			var v mgmtapi.CredentialSetView
			if err := cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodGet, "/_georeg/v1/credential-sets/"+url.PathEscape(name), nil, &v); err != nil {
				return err
			}
			return show(*output, v, header, rows(v))
		},
	}
	del := &cobra.Command{
		Use: "delete --name N", Short: "Delete a credential set", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			return cli.New(*registry, 30*time.Second).Do(c.Context(), http.MethodDelete, "/_georeg/v1/credential-sets/"+url.PathEscape(name), nil, nil)
		},
	}
	for _, c := range []*cobra.Command{showCmd, del} {
		c.Flags().StringVarP(&name, "name", "n", "", "the set's name")
	}
	cmd.AddCommand(create, update, list, showCmd, del)
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
