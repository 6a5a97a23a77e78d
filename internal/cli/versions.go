package cli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/spf13/cobra"
)

// versionView is a version as publish and versions print it (-o json).
type versionView struct {
	FunctionName string `json:"FunctionName"`
	Version      string `json:"Version"`
	Description  string `json:"Description,omitempty"`
	CodeSha256   string `json:"CodeSha256"`
	Runtime      string `json:"Runtime,omitempty"`
	MemorySize   int32  `json:"MemorySize"`
	LastModified string `json:"LastModified"`
	FunctionArn  string `json:"FunctionArn"`
}

func viewVersion(c *types.FunctionConfiguration) versionView {
	return versionView{FunctionName: aws.ToString(c.FunctionName), Version: aws.ToString(c.Version), Description: aws.ToString(c.Description),
		CodeSha256: aws.ToString(c.CodeSha256), Runtime: string(c.Runtime), MemorySize: aws.ToInt32(c.MemorySize),
		LastModified: aws.ToString(c.LastModified), FunctionArn: aws.ToString(c.FunctionArn)}
}

func writeVersionTable(w io.Writer, vs []versionView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tRUNTIME\tMEMORY\tLAST-MODIFIED\tCODE-SHA256\tDESCRIPTION")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%dMB\t%s\t%s\t%s\n", v.Version, dash(v.Runtime), v.MemorySize, dash(displayTime(v.LastModified)), v.CodeSha256, dash(v.Description))
	}
	return tw.Flush()
}

// newPublishCmd is `nimbus publish NAME`: PublishVersion.
func newPublishCmd(g *globals) *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:   "publish NAME",
		Short: "Publish the function's current code and configuration as a version",
		Long: `Publish makes an immutable version of the function from its current code and
configuration ($LATEST), numbered 1, 2, ... and prints it. When nothing changed
since the latest version, that version is printed and no new one is made.
Invoke a version with nimbus invoke NAME:VERSION; point an alias at it with
nimbus alias set.`,
		Example: `  nimbus publish hello
  nimbus publish hello --description "checkout v2" -o json`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			in := &lambda.PublishVersionInput{FunctionName: aws.String(args[0])}
			if description != "" {
				in.Description = aws.String(description)
			}
			out, err := c.lambda.PublishVersion(cmd.Context(), in)
			if err != nil {
				return err
			}
			v := versionView{FunctionName: aws.ToString(out.FunctionName), Version: aws.ToString(out.Version), Description: aws.ToString(out.Description),
				CodeSha256: aws.ToString(out.CodeSha256), Runtime: string(out.Runtime), MemorySize: aws.ToInt32(out.MemorySize),
				LastModified: aws.ToString(out.LastModified), FunctionArn: aws.ToString(out.FunctionArn)}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			return writeVersionTable(cmd.OutOrStdout(), []versionView{v})
		}),
	}
	cmd.Flags().StringVar(&description, "description", "", "the version's description (default: the function's)")
	return cmd
}

// newVersionsCmd is `nimbus versions NAME`: ListVersionsByFunction.
func newVersionsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "versions NAME",
		Short:   "List a function's versions ($LATEST and the published ones)",
		Example: `  nimbus versions hello`,
		Args:    cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			vs := []versionView{}
			p := lambda.NewListVersionsByFunctionPaginator(c.lambda, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String(args[0])})
			for p.HasMorePages() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return err
				}
				for i := range page.Versions {
					vs = append(vs, viewVersion(&page.Versions[i]))
				}
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), vs)
			}
			return writeVersionTable(cmd.OutOrStdout(), vs)
		}),
	}
}

// aliasView is an alias as the alias commands print it (-o json).
type aliasView struct {
	Name            string             `json:"Name"`
	FunctionVersion string             `json:"FunctionVersion"`
	Weights         map[string]float64 `json:"AdditionalVersionWeights,omitempty"`
	Description     string             `json:"Description,omitempty"`
	AliasArn        string             `json:"AliasArn"`
}

func viewAlias(a *types.AliasConfiguration) aliasView {
	v := aliasView{Name: aws.ToString(a.Name), FunctionVersion: aws.ToString(a.FunctionVersion), Description: aws.ToString(a.Description), AliasArn: aws.ToString(a.AliasArn)}
	if a.RoutingConfig != nil && len(a.RoutingConfig.AdditionalVersionWeights) > 0 {
		v.Weights = a.RoutingConfig.AdditionalVersionWeights
	}
	return v
}

// routing describes an alias's traffic: "1" or "1 (90 %), 2 (10 %)".
func (v aliasView) routing() string {
	if len(v.Weights) == 0 {
		return v.FunctionVersion
	}
	rest := 1.0
	var parts []string
	for ver, w := range v.Weights {
		rest -= w
		parts = append(parts, fmt.Sprintf("%s (%s %%)", ver, strconv.FormatFloat(100*w, 'f', -1, 64)))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%s (%s %%), %s", v.FunctionVersion, strconv.FormatFloat(100*rest, 'f', -1, 64), strings.Join(parts, ", "))
}

func writeAliasTable(w io.Writer, as []aliasView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "ALIAS\tVERSIONS\tDESCRIPTION")
	for _, a := range as {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Name, a.routing(), dash(a.Description))
	}
	return tw.Flush()
}

func newAliasCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alias",
		Short: "Set, list and remove a function's aliases",
		Long: `An alias names a version of a function (nimbus publish makes versions):
invoke it with nimbus invoke NAME:ALIAS, and move it to another version to
roll out or back. --weight sends a share of its requests to a second version
(a canary).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAliasSetCmd(g), newAliasLsCmd(g), newAliasRmCmd(g))
	return cmd
}

// parseWeight reads --weight VERSION=SHARE.
func parseWeight(s string) (map[string]float64, error) {
	if s == "" {
		return map[string]float64{}, nil
	}
	v, w, ok := strings.Cut(s, "=")
	share, err := strconv.ParseFloat(w, 64)
	if !ok || v == "" || err != nil || !(share >= 0 && share <= 1) {
		return nil, fmt.Errorf("--weight must be VERSION=SHARE with SHARE from 0 to 1 (e.g. 2=0.1), not %q", s)
	}
	return map[string]float64{v: share}, nil
}

func newAliasSetCmd(g *globals) *cobra.Command {
	var weight, description string
	cmd := &cobra.Command{
		Use:   "set NAME ALIAS VERSION",
		Short: "Point an alias at a version (creating the alias), with an optional canary weight",
		Long: `Set creates ALIAS of function NAME pointing at VERSION, or moves it there.
--weight V2=0.1 sends 10 % of the alias's requests to version V2 (and the rest
to VERSION); without --weight the alias sends every request to VERSION.`,
		Example: `  nimbus alias set hello live 1
  nimbus alias set hello live 1 --weight 2=0.1    # 10 % of live's requests to version 2
  nimbus alias set hello live 2                   # all on version 2`,
		Args: cobra.ExactArgs(3),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			weights, err := parseWeight(weight)
			if err != nil {
				return err
			}
			name, alias, version := args[0], args[1], args[2]
			var desc *string
			if cmd.Flags().Changed("description") {
				desc = aws.String(description)
			}
			out, err := setAlias(cmd.Context(), c, name, alias, version, weights, desc)
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Alias %s of %s: %s\n", out.Name, name, out.routing())
			return err
		}),
	}
	cmd.Flags().StringVar(&weight, "weight", "", "VERSION=SHARE: send SHARE (0 to 1) of the alias's requests to another version")
	cmd.Flags().StringVar(&description, "description", "", "the alias's description")
	return cmd
}

func newAliasLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls NAME",
		Short: "List a function's aliases",
		Args:  cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			as := []aliasView{}
			p := lambda.NewListAliasesPaginator(c.lambda, &lambda.ListAliasesInput{FunctionName: aws.String(args[0])})
			for p.HasMorePages() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return err
				}
				for i := range page.Aliases {
					as = append(as, viewAlias(&page.Aliases[i]))
				}
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), as)
			}
			return writeAliasTable(cmd.OutOrStdout(), as)
		}),
	}
}

func newAliasRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME ALIAS",
		Short: "Remove an alias",
		Args:  cobra.ExactArgs(2),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if _, err := c.lambda.DeleteAlias(cmd.Context(), &lambda.DeleteAliasInput{FunctionName: aws.String(args[0]), Name: aws.String(args[1])}); err != nil {
				return err
			}
			if !g.json() {
				fmt.Fprintf(cmd.OutOrStdout(), "Removed alias %s of %s.\n", args[1], args[0])
			}
			return nil
		}),
	}
}
