package cli

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus/internal/records"
)

// invocationPage is the answer of GET /nimbus/v1/functions/{name}/invocations.
type invocationPage struct {
	Invocations []records.Record `json:"Invocations"`
	NextCursor  string           `json:"NextCursor,omitempty"`
}

// newInvocationsCmd is `nimbus invocations NAME`: a function's invocation
// records, newest first.
func newInvocationsCmd(g *globals) *cobra.Command {
	var since, until, status, cursor string
	var failed, all bool
	var limit int
	cmd := &cobra.Command{
		Use:   "invocations NAME",
		Short: "List a function's invocations: status, duration, billed duration, memory, cold starts",
		Long: `Invocations lists the records of a function's invocations, newest first:
one per invocation, however it arrived (the Invoke API, a function URL, the
Async Service, a trigger), kept for the node's --invocation-retention (7 days
by default). --since and --until take an RFC 3339 time or a duration ago
(1h, 30m, 2d). With -o json the records are printed with Lambda-style field
names (RequestId, Duration, BilledDuration, MaxMemoryUsed, InitDuration, ...).`,
		Example: `  nimbus invocations hello --since 1h
  nimbus invocations hello --failed
  nimbus invocations hello --status timeout,throttled -o json`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			q := url.Values{}
			if err := setWhen(q, since, until, time.Now()); err != nil {
				return err
			}
			if failed && status != "" {
				return fmt.Errorf("--failed and --status cannot be used together")
			}
			if failed {
				q.Set("status", "failed")
			} else if status != "" {
				q.Set("status", status)
			}
			if cmd.Flags().Changed("limit") {
				if limit < 1 || limit > records.MaxLimit {
					return fmt.Errorf("--limit must be 1 to %d, not %d", records.MaxLimit, limit)
				}
				q.Set("limit", strconv.Itoa(limit))
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var recs []records.Record
			next := ""
			for {
				var page invocationPage
				if err := c.getJSON(cmd.Context(), "/nimbus/v1/functions/"+url.PathEscape(args[0])+"/invocations", q, &page); err != nil {
					return err
				}
				recs = append(recs, page.Invocations...)
				next = page.NextCursor
				if !all || next == "" {
					break
				}
				q.Set("cursor", next)
			}
			if recs == nil {
				recs = []records.Record{}
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), recs)
			}
			if err := printPage(cmd, len(recs), "", "invocations", func(w io.Writer) error { return writeInvocationTable(w, recs) }); err != nil {
				return err
			}
			if next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "More invocations: --cursor %s shows the next page, --all every page.\n", next)
			}
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "only invocations started at or after this time (RFC 3339, or a duration ago: 1h)")
	fl.StringVar(&until, "until", "", "only invocations started at or before this time (RFC 3339, or a duration ago: 10m)")
	fl.BoolVar(&failed, "failed", false, "only invocations that did not succeed (function errors, timeouts, throttles, platform errors, abandoned)")
	fl.StringVar(&status, "status", "", "only these statuses, comma-separated: success, function_error, timeout, throttled, platform_error, abandoned")
	fl.IntVar(&limit, "limit", records.DefaultLimit, fmt.Sprintf("invocations per page, 1 to %d", records.MaxLimit))
	fl.BoolVar(&all, "all", false, "fetch every page, not only the first")
	fl.StringVar(&cursor, "cursor", "", "start at this cursor (printed when there are more invocations)")
	return cmd
}

// writeInvocationTable writes one row per record.
func writeInvocationTable(w io.Writer, recs []records.Record) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "START\tREQUEST ID\tTRIGGER\tSTATUS\tDURATION\tBILLED\tMEMORY\tCOLD START\tERROR")
	for _, r := range recs {
		cold := "-"
		if r.ColdStart {
			cold = fmt.Sprintf("yes (init %.1f ms)", r.InitDuration)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f ms\t%d ms\t%d/%d MB\t%s\t%s\n", r.StartTime.Local().Format("2006-01-02 15:04:05.000"),
			r.RequestID, r.Trigger, r.Status, r.Duration, r.BilledDuration, r.MaxMemoryUsed, r.MemorySize, cold, dash(r.ErrorType))
	}
	return tw.Flush()
}
