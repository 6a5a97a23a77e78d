package cli

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus/internal/audit"
)

// auditPage is the answer of GET /nimbus/v1/audit.
type auditPage struct {
	Events     []audit.Event `json:"Events"`
	NextMarker string        `json:"NextMarker,omitempty"`
}

type auditFlags struct {
	since, until, key, function, action string
	page                                pageFlags
}

// newAuditCmd is `nimbus audit`: the audit trail, newest first (admin keys
// only).
func newAuditCmd(g *globals) *cobra.Command {
	var f auditFlags
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit trail: who changed what, from where, and how it ended (admin keys only)",
		Long: `Audit lists the recorded changes (functions, keys, triggers, concurrency,
invoke configs, URLs, event source mappings, task stops, re-drives) and the
refused attempts on any request, newest first, one page (--limit) at a time;
--all fetches every page. Reads and invokes that succeed are not recorded.
--since and --until take an RFC 3339 time or a duration ago (1h, 30m, 2d).`,
		Example: `  nimbus audit --since 1h
  nimbus audit --function resize --limit 20
  nimbus audit --key ci --since 2026-11-24T10:00:00Z -o json`,
		Args: cobra.NoArgs,
		RunE: g.run(func(cmd *cobra.Command, c *client, _ []string) error {
			q, err := f.query(cmd, time.Now())
			if err != nil {
				return err
			}
			events, next, err := collect(q, f.page.all, func(q url.Values) ([]audit.Event, string, error) {
				var page auditPage
				err := c.getJSON(cmd.Context(), "/nimbus/v1/audit", q, &page)
				return page.Events, page.NextMarker, err
			})
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), auditPage{Events: events, NextMarker: next})
			}
			return printPage(cmd, len(events), next, "audit events", func(w io.Writer) error { return writeAuditTable(w, events) })
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.since, "since", "", "only events at or after this time (RFC 3339, or a duration ago: 1h)")
	fl.StringVar(&f.until, "until", "", "only events at or before this time (RFC 3339, or a duration ago: 10m)")
	fl.StringVar(&f.key, "key", "", "only requests signed by this key (its name)")
	fl.StringVar(&f.function, "function", "", "only requests on this function")
	fl.StringVar(&f.action, "action", "", "only this operation, e.g. CreateFunction, DeleteKey")
	f.page.register(cmd, "events")
	return cmd
}

// query checks the flags and returns the list's query.
func (f *auditFlags) query(cmd *cobra.Command, now time.Time) (url.Values, error) {
	q, err := f.page.query(cmd)
	if err != nil {
		return nil, err
	}
	if err := setWhen(q, f.since, f.until, now); err != nil {
		return nil, err
	}
	for k, v := range map[string]string{"key": f.key, "function": f.function, "action": f.action} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q, nil
}

// writeAuditTable writes one row per event.
func writeAuditTable(w io.Writer, events []audit.Event) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKEY\tSOURCE\tACTION\tRESOURCE\tSTATUS")
	for _, e := range events {
		key := e.Key
		if key == "" {
			key = "(" + dash(e.AccessKeyID) + ")" // failed authentication: the id it claimed
		}
		res := e.Function
		if e.Resource != "" {
			if res != "" {
				res += "/"
			}
			res += e.Resource
		}
		status := strconv.Itoa(e.Status)
		if e.ErrorType != "" {
			status += " " + e.ErrorType
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), key, e.Source, e.Action, dash(res), status)
	}
	return tw.Flush()
}
