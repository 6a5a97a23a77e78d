package cli

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/spf13/cobra"
)

func newRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"delete"},
		Short:   "Delete functions",
		Args:    cobra.MinimumNArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			for _, name := range args {
				_, err := c.lambda.DeleteFunction(cmd.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String(name)})
				if err != nil {
					return fmt.Errorf("delete %s: %w", name, err)
				}
				if !g.json() {
					fmt.Fprintf(cmd.OutOrStdout(), "Deleted function %s.\n", name)
				}
			}
			return nil
		}),
	}
}
