// Command nimbus is the Nimbus server and its command-line client.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus/internal/cli"
	"github.com/nimbus-serverless/nimbus/internal/sandbox/process"
	"github.com/nimbus-serverless/nimbus/internal/version"
)

func main() {
	// When started as a sandbox's init helper, this sets up the instance and
	// execs the function; it never returns then.
	process.MaybeInit()

	root := &cobra.Command{
		Use:           "nimbus",
		Short:         "Nimbus runs functions on demand: a self-hosted, Lambda-compatible serverless platform",
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints "nimbus version <version>"; set the version
		// with -ldflags (internal/version).
		Version: version.String(),
	}
	root.AddCommand(newServeCmd())
	cli.AddCommands(root)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "nimbus: "+cli.OneLine(err))
		os.Exit(1)
	}
}
