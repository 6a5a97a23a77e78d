package cli

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
)

// newTriggersRotateKeyCmd is `nimbus triggers rotate-key`: a function URL
// (an http trigger whose authType is KEY) keeps its key through every
// deploy and update that leaves the key out, until it is rotated with this
// command (docs/function-urls.md).
func newTriggersRotateKeyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-key FUNCTION TRIGGER",
		Short: "Give a function URL (an http trigger with authType KEY) a new key",
		Long: `Rotate-key replaces the key of a function URL whose authType is KEY with a
new generated one, and prints it. From then on the old key is refused (403).
Deploys and updates that leave the key out keep it; only this command, or a
config that sets "key" itself, changes it.`,
		Example: `  KEY=$(nimbus triggers rotate-key hello url)
  curl -H "X-Nimbus-Key: $KEY" http://127.0.0.1:9000/fn/hello/`,
		Args: cobra.ExactArgs(2),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := checkTriggerArgs(args); err != nil {
				return err
			}
			var t triggerView
			if err := c.send(cmd.Context(), http.MethodPost, triggersPath(args[0], args[1], "rotate-key"), nil, &t); err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), t)
			}
			var cfg struct {
				Key string `json:"key"`
			}
			if err := json.Unmarshal(t.Config, &cfg); err != nil || cfg.Key == "" {
				return fmt.Errorf("the server answered without the new key (config %s)", t.Config)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "New key of trigger %s of function %s (the old key is refused from now on):\n", args[1], args[0])
			_, err := fmt.Fprintln(cmd.OutOrStdout(), cfg.Key)
			return err
		}),
	}
}
