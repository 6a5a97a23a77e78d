package cli

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/spf13/cobra"
)

func newLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List functions",
		Args:    cobra.NoArgs,
		RunE: g.run(func(cmd *cobra.Command, c *client, _ []string) error {
			views := []functionView{}
			pages := lambda.NewListFunctionsPaginator(c.lambda, &lambda.ListFunctionsInput{})
			for pages.HasMorePages() {
				page, err := pages.NextPage(cmd.Context())
				if err != nil {
					return err
				}
				for i := range page.Functions {
					views = append(views, viewOf(&page.Functions[i]))
				}
			}
			switch {
			case g.json():
				return writeJSON(cmd.OutOrStdout(), views)
			case len(views) == 0:
				_, err := fmt.Fprintln(cmd.ErrOrStderr(), "No functions.")
				return err
			}
			return writeFunctionTable(cmd.OutOrStdout(), views)
		}),
	}
}
