package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// keyView is an access key as the API answers (auth.Key).
type keyView = auth.Key

// newKeysCmd is `nimbus keys`: access keys and their roles (admin only).
func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage access keys: create, ls, rm, rotate (admin keys only)",
		Long: `Keys are the credentials that sign requests to Nimbus (AWS SigV4). Each has a
role: admin (everything, keys included), developer (manages and invokes the
functions its --functions glob matches) or invoker (only invokes those). A
key's secret is shown once, when it is created or rotated.`,
	}
	cmd.AddCommand(newKeysCreateCmd(g), newKeysLsCmd(g), newKeysRmCmd(g), newKeysRotateCmd(g))
	return cmd
}

func newKeysCreateCmd(g *globals) *cobra.Command {
	var role, functions string
	cmd := &cobra.Command{
		Use:   "create NAME --role admin|developer|invoker [--functions GLOB]",
		Short: "Create an access key and print its secret (shown only now)",
		Example: `  nimbus keys create ci --role developer --functions 'team-a-*'
  nimbus keys create web --role invoker --functions checkout -o json`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if _, err := auth.ParseRole(role); err != nil {
				return fmt.Errorf("--role: %v", err)
			}
			var key keyView
			req := map[string]string{"Name": args[0], "Role": role, "Functions": functions}
			if err := c.send(cmd.Context(), http.MethodPost, "/nimbus/v1/keys", req, &key); err != nil {
				return err
			}
			return g.writeSecretKey(cmd, key, "Created")
		}),
	}
	cmd.Flags().StringVar(&role, "role", "", "admin, developer or invoker (required)")
	cmd.Flags().StringVar(&functions, "functions", "*", "glob of the function names a developer or invoker key may touch")
	return cmd
}

// writeSecretKey prints a key with its secret: the JSON object, or a few
// lines with a reminder that the secret is not shown again.
func (g *globals) writeSecretKey(cmd *cobra.Command, key keyView, verb string) error {
	if g.json() {
		return writeJSON(cmd.OutOrStdout(), key)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s key %s. Its secret is shown only now: keep it.\n", verb, key.Name)
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "AccessKeyId:\t%s\nSecretAccessKey:\t%s\nRole:\t%s\nFunctions:\t%s\n", key.AccessKeyID, key.SecretAccessKey, key.Role, key.Functions)
	return tw.Flush()
}

func newKeysLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List access keys (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: g.run(func(cmd *cobra.Command, c *client, _ []string) error {
			var out struct {
				Keys []keyView `json:"Keys"`
			}
			if err := c.send(cmd.Context(), http.MethodGet, "/nimbus/v1/keys", nil, &out); err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			return writeKeyTable(cmd.OutOrStdout(), out.Keys)
		}),
	}
}

func writeKeyTable(w io.Writer, keys []keyView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tFUNCTIONS\tACCESS-KEY-ID\tCREATED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Name, k.Role, k.Functions, k.AccessKeyID, k.Created.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func newKeysRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete an access key: requests it signs are refused at once",
		Args:  cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := c.send(cmd.Context(), http.MethodDelete, "/nimbus/v1/keys/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			if !g.json() {
				fmt.Fprintf(cmd.ErrOrStderr(), "Deleted key %s\n", args[0])
			}
			return nil
		}),
	}
}

func newKeysRotateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate NAME",
		Short: "Give an access key a new id and secret; the old ones are refused at once",
		Long: `Rotate replaces a key's access key id and secret and prints the new ones
(shown only now). Requests signed with the old pair are refused from then on.
Rotating the key of the node's credentials file rewrites that file.`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			var key keyView
			if err := c.send(cmd.Context(), http.MethodPost, "/nimbus/v1/keys/"+url.PathEscape(args[0])+"/rotate", nil, &key); err != nil {
				return err
			}
			return g.writeSecretKey(cmd, key, "Rotated")
		}),
	}
}
