package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newRuntimesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "runtimes",
		Short: "List the runtimes the node runs",
		Args:  cobra.NoArgs,
		RunE: g.run(func(cmd *cobra.Command, c *client, _ []string) error {
			resp, err := c.get(cmd.Context(), "/nimbus/v1/runtimes", nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var body struct{ Runtimes []string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				return fmt.Errorf("read runtimes: %w", err)
			}
			if body.Runtimes == nil {
				body.Runtimes = []string{}
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), body.Runtimes)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 3, ' ', 0)
			fmt.Fprintln(tw, "RUNTIME")
			for _, r := range body.Runtimes {
				fmt.Fprintln(tw, r)
			}
			return tw.Flush()
		}),
	}
}
