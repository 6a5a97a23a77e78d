package cli

import (
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/spf13/cobra"
)

func newGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a function",
		Args:  cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			out, err := c.lambda.GetFunction(cmd.Context(), &lambda.GetFunctionInput{FunctionName: aws.String(args[0])})
			if err != nil {
				return err
			}
			if out.Configuration == nil {
				return errors.New("the server answered GetFunction without a configuration")
			}
			v := functionViewOf(out)
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			return writeFunctionDetail(cmd.OutOrStdout(), v)
		}),
	}
}
