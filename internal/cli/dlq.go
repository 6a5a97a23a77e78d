package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus"
)

// deadLetterList is a page of a function's dead letters as GET
// /nimbus/v1/functions/{name}/dead-letters sends it, and what
// `dlq ls -o json` prints.
type deadLetterList struct {
	DeadLetters []nimbus.DeadLetter `json:"deadLetters"`
	NextMarker  string              `json:"nextMarker,omitempty"`
}

// redriveRequest and redriveResult are the body and the answer of POST
// /nimbus/v1/functions/{name}/dead-letters/redrive.
type redriveRequest struct {
	Seqs []uint64 `json:"seqs,omitempty"`
}

type redriveResult struct {
	Redriven int `json:"redriven"`
}

func newDLQCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List and re-drive a function's dead letters",
		Long: `An asynchronous event that failed for good (its retries exhausted, too old
to run, or its function deleted) is kept as a dead letter, with its payload,
until it is re-driven: submitted again as the same task.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newDLQLsCmd(g), newDLQRedriveCmd(g))
	return cmd
}

func newDLQLsCmd(g *globals) *cobra.Command {
	var page pageFlags
	cmd := &cobra.Command{
		Use:     "ls FUNCTION",
		Aliases: []string{"list"},
		Short:   "List a function's dead letters, oldest first",
		Long: `Ls lists a function's dead letters, oldest first, one page (--limit) at a
time; --all fetches every page. -o json includes each event's payload.`,
		Example: `  nimbus dlq ls resize
  nimbus dlq ls resize --all -o json`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := checkName("function name", args[0]); err != nil {
				return err
			}
			q, err := page.query(cmd)
			if err != nil {
				return err
			}
			dls, next, err := collect(q, page.all, func(q url.Values) ([]nimbus.DeadLetter, string, error) {
				var p deadLetterList
				err := c.getJSON(cmd.Context(), functionPath(args[0], "dead-letters"), q, &p)
				return p.DeadLetters, p.NextMarker, err
			})
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), deadLetterList{DeadLetters: dls, NextMarker: next})
			}
			return printPage(cmd, len(dls), next, "dead letters", func(w io.Writer) error { return writeDeadLetterTable(w, dls) })
		}),
	}
	page.register(cmd, "dead letters")
	return cmd
}

func newDLQRedriveCmd(g *globals) *cobra.Command {
	var seqs []uint
	cmd := &cobra.Command{
		Use:   "redrive FUNCTION [--seq N]...",
		Short: "Submit dead letters again (all of them, or those --seq names)",
		Long: `Redrive submits a function's dead letters again, each as the task it was,
and removes them from the list. Without --seq it re-drives all of them;
--seq (repeated, or comma-separated) names the ones to re-drive by the SEQ
that nimbus dlq ls shows.`,
		Example: `  nimbus dlq redrive resize
  nimbus dlq redrive resize --seq 12 --seq 15`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := checkName("function name", args[0]); err != nil {
				return err
			}
			want, err := redriveSeqs(seqs)
			if err != nil {
				return err
			}
			var body []byte
			if len(want) > 0 {
				if body, err = json.Marshal(redriveRequest{Seqs: want}); err != nil {
					return err
				}
			}
			var res redriveResult
			if err := c.post(cmd.Context(), functionPath(args[0], "dead-letters", "redrive"), body, &res); err != nil {
				return err
			}
			return printRedrive(cmd, g, args[0], want, res.Redriven)
		}),
	}
	cmd.Flags().UintSliceVar(&seqs, "seq", nil, "re-drive the dead letter with this SEQ (repeatable; default: all)")
	return cmd
}

// redriveSeqs checks --seq and returns its values without repeats.
func redriveSeqs(seqs []uint) ([]uint64, error) {
	var out []uint64
	for _, s := range seqs {
		if s == 0 {
			return nil, errors.New("invalid --seq 0: sequence numbers start at 1 (nimbus dlq ls shows them)")
		}
		if !slices.Contains(out, uint64(s)) {
			out = append(out, uint64(s))
		}
	}
	return out, nil
}

// printRedrive reports how many dead letters were re-driven; naming some
// that none matched is an error.
func printRedrive(cmd *cobra.Command, g *globals, fn string, want []uint64, n int) error {
	if len(want) > 0 && n == 0 {
		return fmt.Errorf("function %s has no dead letter with --seq %s (nimbus dlq ls %s lists them)", fn, joinSeqs(want), fn)
	}
	if len(want) > n {
		fmt.Fprintf(cmd.ErrOrStderr(), "%d of the %d dead letters named by --seq were not found (already re-driven?).\n", len(want)-n, len(want))
	}
	if g.json() {
		return writeJSON(cmd.OutOrStdout(), redriveResult{Redriven: n})
	}
	if n == 0 {
		_, err := fmt.Fprintln(cmd.ErrOrStderr(), "No dead letters to re-drive.")
		return err
	}
	noun := "dead letters"
	if n == 1 {
		noun = "dead letter"
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "Re-drove %d %s of function %s.\n", n, noun, fn)
	return err
}

func joinSeqs(seqs []uint64) string {
	s := ""
	for i, q := range seqs {
		if i > 0 {
			s += ","
		}
		s += strconv.FormatUint(q, 10)
	}
	return s
}

// writeDeadLetterTable writes one row per dead letter.
func writeDeadLetterTable(w io.Writer, dls []nimbus.DeadLetter) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTASK\tCONDITION\tATTEMPTS\tFAILED\tREASON")
	for _, d := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", d.Seq, dash(d.TaskID), dash(d.Condition), d.Attempts,
			tableTime(d.Failed), dash(truncateText(d.Reason, 60)))
	}
	return tw.Flush()
}
