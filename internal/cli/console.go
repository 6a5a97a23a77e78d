package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/spf13/cobra"
)

// linkLife is how long a login link of `nimbus console` is valid.
const linkLife = 60 * time.Second

// newConsoleCmd is `nimbus console`: the address of the web console, as a
// login link signed with the CLI's key (SigV4, presigned for a minute), so
// that opening it (and confirming) signs the browser in without typing the
// secret.
func newConsoleCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "console [FUNCTION]",
		Short: "Print a link that signs a browser in to the web console with your key",
		Long: `Console prints the address of the node's web console. With a key (the
node's local credentials file, a profile or the environment, as for every
command) it is a login link: a URL presigned with the key, valid once for
one minute, that offers to sign the browser in as that key; the secret
itself is not in it. Without a key (a node run with --auth none) it is the console's address.
With FUNCTION, the link opens that function's page.`,
		Example: `  nimbus console             # open the printed link in a browser within a minute
  nimbus console hello       # the page of function hello`,
		Args: cobra.MaximumNArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			page := "/console/"
			if len(args) == 1 {
				if !registry.ValidName(args[0]) {
					return fmt.Errorf("%q is not a function name (letters, digits, - and _, at most 64)", args[0])
				}
				page += "functions/" + args[0]
			}
			if !c.creds.HasKeys() {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), c.endpoint+page)
				return err
			}
			q := url.Values{"X-Amz-Expires": {strconv.Itoa(int(linkLife / time.Second))}, "next": {page}}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, c.endpoint+"/console/login/link?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			link, _, err := v4.NewSigner().PresignHTTP(cmd.Context(), c.creds, req, emptySHA256, "lambda", c.region, time.Now())
			if err != nil {
				return fmt.Errorf("sign the login link: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Open this link within a minute to sign in to the console as key %s (it works once):\n", c.creds.AccessKeyID)
			_, err = fmt.Fprintln(cmd.OutOrStdout(), link)
			return err
		}),
	}
}
