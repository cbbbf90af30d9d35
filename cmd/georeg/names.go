package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// nameFlags gives every command that names one object by an argument
// (Use "verb NAME ...") the -n/--name flag az acr uses throughout; the
// argument stays a synonym. Give one or the other.
func nameFlags(root *cobra.Command) {
	for _, c := range root.Commands() {
		nameFlags(c)
	}
	fields := strings.Fields(root.Use)
	if len(fields) < 2 || fields[1] != "NAME" || root.RunE == nil || root.Flags().Lookup("name") != nil {
		return
	}
	var name string
	root.Flags().StringVarP(&name, "name", "n", "", "the object's name (or give it as the argument)")
	run := root.RunE
	root.Args = func(c *cobra.Command, args []string) error {
		switch {
		case len(args) > 1:
			return fmt.Errorf("give one name, not %d", len(args))
		case len(args) == 1 && name != "" && args[0] != name:
			return fmt.Errorf("the name is given twice: %q and --name %q", args[0], name)
		case len(args) == 0 && name == "":
			return errors.New("give the name: -n/--name NAME (or as the argument)")
		}
		return nil
	}
	root.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			args = []string{name}
		}
		return run(c, args)
	}
}
