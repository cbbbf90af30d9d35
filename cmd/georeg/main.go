// Command georeg is a geo-replicated OCI container registry: `georeg serve`
// runs one region node, `georeg up` a whole registry on this machine.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// query is the global --query: a JMESPath expression over what a command
// prints.
var query string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "georeg",
		Short:         "A geo-replicated OCI container registry",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&query, "query", "", "JMESPath query applied to the answer before it is printed (see jmespath.org), e.g. \"[?state=='Ready'].name\"")
	root.AddCommand(serveCmd(), upCmd(), linkCmd(), routeCmd(), imageCmd(), waitCmd(), replicationCmd(), webhookCmd())
	root.AddCommand(accessCmds()...)
	nameFlags(root)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "georeg:", err)
		os.Exit(1)
	}
}
