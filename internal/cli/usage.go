package cli

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus/internal/records"
)

// usageRow is one row of `nimbus usage`: a function's, a day's or an
// hour's usage and cost.
type usageRow struct {
	Function string    `json:"Function,omitempty"`
	Start    time.Time `json:"Start,omitzero"`
	records.Usage
	GBSeconds float64 `json:"GBSeconds"`
	Cost      float64 `json:"Cost"`
}

// usageView is what `nimbus usage -o json` prints.
type usageView struct {
	Since    time.Time          `json:"Since"`
	Until    time.Time          `json:"Until"`
	By       string             `json:"By"`
	Currency string             `json:"Currency"`
	Prices   records.Prices     `json:"Prices"`
	Rows     []usageRow         `json:"Usage"`
	Total    records.UsageTotal `json:"Total"`
}

// newUsageCmd is `nimbus usage`: requests, billed duration, GB-seconds
// and cost, by function, day or hour.
func newUsageCmd(g *globals) *cobra.Command {
	var since, until, by, function string
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Show usage and cost: requests, billed duration and GB-seconds, by function, day or hour",
		Long: `Usage reports what functions used, as Lambda and Function Compute bill it:
billed requests (invocations that ran), billed duration (the run and a cold
start's init, rounded up to the millisecond), GB-seconds (memory GB times
billed seconds) and their cost under the node's price table (--prices; by
default Lambda's list prices), with the monthly free tier taken off the
total. --by function (the default) gives one row per function, --by day and
--by hour one row per period (UTC). -o csv writes the rows as CSV.`,
		Example: `  nimbus usage
  nimbus usage --since 7d --by day
  nimbus usage --function hello --by hour --since 24h
  nimbus usage --since 30d -o csv > usage.csv`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{csvAnnotation: "yes"},
		RunE: g.run(func(cmd *cobra.Command, c *client, _ []string) error {
			granularity := records.Day
			switch by {
			case "function", "day":
			case "hour":
				granularity = records.Hour
			default:
				return fmt.Errorf("--by must be function, day or hour, not %q", by)
			}
			q := url.Values{"granularity": {granularity}}
			if err := setWhen(q, since, until, time.Now()); err != nil {
				return err
			}
			if function != "" {
				q.Set("function", function)
			}
			var rep records.UsageReport
			if err := c.getJSON(cmd.Context(), "/nimbus/v1/usage", q, &rep); err != nil {
				return err
			}
			rows := groupUsage(&rep, by)
			out := cmd.OutOrStdout()
			switch {
			case g.json():
				return writeJSON(out, usageView{Since: rep.Since, Until: rep.Until, By: by, Currency: rep.Prices.Currency,
					Prices: rep.Prices, Rows: rows, Total: rep.Total})
			case g.output == formatCSV:
				return writeUsageCSV(out, rows, by)
			}
			return writeUsageTable(out, &rep, rows, by)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "30d", "from this time (RFC 3339, or a duration ago: 30d, 24h)")
	fl.StringVar(&until, "until", "", "until this time (RFC 3339, or a duration ago; default now)")
	fl.StringVar(&by, "by", "function", "one row per function, day or hour")
	fl.StringVar(&function, "function", "", "only this function")
	return cmd
}

// groupUsage sums the report's rows (per function per period) into the
// rows of --by.
func groupUsage(rep *records.UsageReport, by string) []usageRow {
	rows := map[string]*usageRow{}
	var keys []string
	for _, r := range rep.Rows {
		k, row := r.Function, usageRow{Function: r.Function}
		if by != "function" {
			k, row = r.Start.Format(time.RFC3339), usageRow{Start: r.Start}
		}
		if rows[k] == nil {
			rows[k] = &row
			keys = append(keys, k)
		}
		rows[k].Usage.Add(&r.Usage)
		rows[k].Cost += r.Cost
	}
	sort.Strings(keys)
	out := make([]usageRow, 0, len(keys))
	for _, k := range keys {
		r := rows[k]
		r.GBSeconds = r.Usage.GBSeconds()
		out = append(out, *r)
	}
	return out
}

// label is a row's first column.
func (r *usageRow) label(by string) string {
	switch by {
	case "day":
		return r.Start.UTC().Format(time.DateOnly)
	case "hour":
		return r.Start.UTC().Format("2006-01-02 15:00Z")
	}
	return r.Function
}

func writeUsageTable(w io.Writer, rep *records.UsageReport, rows []usageRow, by string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', tabwriter.AlignRight)
	cur := rep.Prices.Currency
	first := map[string]string{"function": "FUNCTION", "day": "DAY (UTC)", "hour": "HOUR (UTC)"}[by]
	fmt.Fprintf(tw, "%s\tREQUESTS\tERRORS\tTHROTTLES\tCOLD STARTS\tBILLED DURATION\tGB-SECONDS\tCOST (%s)\t\n", first, cur)
	line := func(label string, u *records.Usage, gbs, cost float64) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%.3f\t%.6f\t\n", label, u.Requests, u.Errors, u.Throttles, u.ColdStarts,
			billedText(u.BilledMs), gbs, cost)
	}
	for i := range rows {
		line(rows[i].label(by), &rows[i].Usage, rows[i].GBSeconds, rows[i].Cost)
	}
	t := &rep.Total
	line("TOTAL", &t.Usage, t.GBSeconds, t.Cost)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s to %s. Free tier: -%.6f %s; to pay: %.6f %s.\n", rep.Since.UTC().Format(time.RFC3339), rep.Until.UTC().Format(time.RFC3339),
		t.FreeTierDiscount, cur, t.NetCost, cur)
	return nil
}

// billedText is a billed duration in ms, or in s above 10 s.
func billedText(ms int64) string {
	if ms < 10_000 {
		return strconv.FormatInt(ms, 10) + " ms"
	}
	return strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + " s"
}

func writeUsageCSV(w io.Writer, rows []usageRow, by string) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(append([]string{by}, records.CSVColumns...))
	for i := range rows {
		r := &rows[i]
		_ = cw.Write(append([]string{r.label(by)}, r.CSVFields(r.GBSeconds, r.Cost)...))
	}
	cw.Flush()
	return cw.Error()
}
