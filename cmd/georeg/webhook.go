package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/georeg/georeg/internal/cli"
	"github.com/georeg/georeg/internal/mgmtapi"
	"github.com/georeg/georeg/internal/webhook"
)

// webhookCmd mirrors `az acr webhook`: any region answers, since webhooks
// are settings that replicate.
func webhookCmd() *cobra.Command {
	var registry, output string
	client := func(timeout time.Duration) *cli.Client {
		return cli.New(registry, timeout)
	}
	cmd := &cobra.Command{Use: "webhook", Short: "Webhooks: create, list, show, update, delete, get-config, list-events, ping"}
	cmd.PersistentFlags().StringVarP(&registry, "registry", "r", cli.Registry(), "registry (any region) to ask")
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", cli.OutputHelp)

	var f webhookFlags
	var name string
	create := &cobra.Command{
		Use:   "create --name NAME --uri URL --actions A[,A...]",
		Short: "Create a webhook; prints its signing secret once",
		Long: "Create a webhook. Actions: " + strings.Join(webhook.Actions, ", ") + ".\n" +
			"Without --location it fires in every region, for the events of that region.",
		Example: `  georeg webhook create --name deployhook --uri http://127.0.0.1:9000/hook --actions push,replicated --scope 'app/*:*'
  georeg webhook create --name euarrivals --location westeurope --uri https://ci.example.com/hook --actions replicated --headers Authorization='Bearer xyz'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || f.uri == "" || len(f.actions) == 0 {
				return errors.New("--name, --uri and --actions are required")
			}
			body, err := f.body(cmd)
			if err != nil {
				return err
			}
			created, err := client(30*time.Second).CreateWebhook(cmd.Context(), name, body)
			if err != nil {
				return err
			}
			if !custom(output) { // the secret is in the answer
				return show(output, created, "", nil)
			}
			if err := printWebhooks([]webhook.View{created.View}, output); err != nil {
				return err
			}
			if created.Secret != "" {
				fmt.Printf("\nsecret: %s\nDeliveries carry %s: sha256=HMAC-SHA256(secret, body) in hex. This is the only time it is shown.\n", created.Secret, webhook.SignatureHeader)
			}
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "webhook name: 5 to 50 letters and digits")
	f.register(create)

	list := &cobra.Command{
		Use: "list", Short: "List the registry's webhooks", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hooks, err := client(30 * time.Second).Webhooks(cmd.Context())
			if err != nil {
				return err
			}
			return printWebhooks(hooks, output)
		},
	}
	showCmd := &cobra.Command{
		Use: "show NAME", Short: "Show a webhook (without its secret and header values)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := client(30*time.Second).Webhook(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printWebhooks([]webhook.View{*v}, output)
		},
	}
	var uf webhookFlags
	update := &cobra.Command{
		Use:     "update NAME [--uri --actions --scope --headers --status --location --format --secret]",
		Short:   "Change a webhook's fields",
		Example: `  georeg webhook update deployhook --status disabled`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := uf.body(cmd)
			if err != nil {
				return err
			}
			v, err := client(30*time.Second).UpdateWebhook(cmd.Context(), args[0], body)
			if err != nil {
				return err
			}
			return printWebhooks([]webhook.View{*v}, output)
		},
	}
	uf.register(update)
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a webhook; its pending deliveries are dropped", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := client(30*time.Second).DeleteWebhook(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("deleted webhook %s\n", args[0])
			return nil
		},
	}
	getConfig := &cobra.Command{
		Use: "get-config NAME", Short: "Show a webhook's service URI and custom headers", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client(30*time.Second).WebhookConfig(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			rows := [][]string{{"service URI", c.URI}}
			for _, k := range slices.Sorted(maps.Keys(c.Headers)) {
				rows = append(rows, []string{"header " + k, c.Headers[k]})
			}
			return show(output, c, "FIELD\tVALUE", rows)
		},
	}
	var n int
	listEvents := &cobra.Command{
		Use: "list-events NAME", Short: "List a webhook's deliveries (every region it fires in), newest first", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			evs, err := client(30*time.Second).WebhookEvents(cmd.Context(), args[0], n)
			if err != nil {
				return err
			}
			return printEvents(evs, output)
		},
	}
	listEvents.Flags().IntVar(&n, "top", 100, "how many (1 to 1000)")
	ping := &cobra.Command{
		Use: "ping NAME", Short: "Send a ping event and show the receiver's answer", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := client(time.Minute).PingWebhook(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !custom(output) {
				return show(output, res, "", nil)
			}
			fmt.Printf("event %s from %s: %s, status %d, %d ms", res.EventID, res.Region, res.State, res.StatusCode, res.LatencyMs)
			if res.Error != "" {
				fmt.Printf(", %s", res.Error)
			}
			fmt.Println()
			if res.State != "delivered" {
				return fmt.Errorf("the receiver did not take the ping")
			}
			return nil
		},
	}
	cmd.AddCommand(create, list, showCmd, update, del, getConfig, listEvents, ping)
	return cmd
}

// webhookFlags are the fields create and update set.
type webhookFlags struct {
	uri, scope, status, location, format, secret string
	actions, headers                             []string
}

func (f *webhookFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.uri, "uri", "", "the receiver's URL")
	c.Flags().StringSliceVar(&f.actions, "actions", nil, "actions, comma-separated or repeated: "+strings.Join(webhook.Actions, ", "))
	c.Flags().StringVar(&f.scope, "scope", "", "repo:tag filter with * wildcards; 'repo' means repo:latest; empty: every event")
	c.Flags().StringArrayVar(&f.headers, "headers", nil, "custom header key=value (repeat the flag)")
	c.Flags().StringVar(&f.status, "status", "", "enabled or disabled")
	c.Flags().StringVar(&f.location, "location", "", "the region it fires in (default: every region)")
	c.Flags().StringVar(&f.format, "format", "", "payload format: acr (default) or cloudevents")
	c.Flags().StringVar(&f.secret, "secret", "", "signing secret (create: random when not given; update: \"\" removes it)")
}

// body turns the flags that were given into a request body.
func (f *webhookFlags) body(cmd *cobra.Command) (mgmtapi.WebhookBody, error) {
	var b mgmtapi.WebhookBody
	changed := cmd.Flags().Changed
	str := func(flag string, v string) *string {
		if !changed(flag) {
			return nil
		}
		return &v
	}
	b.URI, b.Scope, b.Status = str("uri", f.uri), str("scope", f.scope), str("status", f.status)
	b.Location, b.Format, b.Secret = str("location", f.location), str("format", f.format), str("secret", f.secret)
	if changed("actions") {
		b.Actions = f.actions
	}
	if changed("headers") {
		b.Headers = map[string]string{}
		for _, h := range f.headers {
			k, v, ok := strings.Cut(h, "=")
			if !ok || k == "" {
				return b, fmt.Errorf("--headers %q: give key=value", h)
			}
			b.Headers[k] = v
		}
	}
	return b, nil
}

func printWebhooks(hooks []webhook.View, output string) error {
	if !custom(output) {
		return show(output, hooks, "", nil)
	}
	switch output {
	case "tsv", "table":
		tw, flush := rows(output)
		if output == "table" {
			fmt.Fprintln(tw, "NAME\tSTATUS\tLOCATION\tACTIONS\tSCOPE\tFORMAT\tSERVICE URI")
		}
		for _, h := range hooks {
			loc := h.Location
			if loc == "" && output == "table" {
				loc = "(every region)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Status, loc, strings.Join(h.Actions, ","), h.Scope, h.Format, h.URI)
		}
		return flush()
	}
	return fmt.Errorf("--output %q: use table, json or tsv", output)
}

func printEvents(evs *mgmtapi.WebhookEvents, output string) error {
	if !custom(output) {
		return show(output, evs, "", nil)
	}
	switch output {
	case "tsv", "table":
		tw, flush := rows(output)
		if output == "table" {
			fmt.Fprintln(tw, "CREATED\tREGION\tACTION\tTARGET\tSTATE\tATTEMPTS\tSTATUS\tLATENCY\tEVENT ID\tERROR")
		}
		for _, e := range evs.Events {
			var ev webhook.Event
			_ = json.Unmarshal(e.Event, &ev)
			target := ev.Target.Repository
			switch {
			case ev.Target.Tag != "":
				target += ":" + ev.Target.Tag
			case ev.Target.Digest != "":
				target += "@" + ev.Target.Digest
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", e.Created.UTC().Format(time.RFC3339), e.Region, e.Action,
				target, e.State, e.Attempts, e.StatusCode, e.Latency.Round(time.Millisecond), e.EventID, e.Error)
		}
		if err := flush(); err != nil {
			return err
		}
		if len(evs.Unreachable) > 0 {
			fmt.Fprintf(os.Stderr, "not listed: the logs of %s could not be read\n", strings.Join(evs.Unreachable, ", "))
		}
		return nil
	}
	return fmt.Errorf("--output %q: use table, json or tsv", output)
}
