package console

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/records"
)

type usageSum struct {
	Label string
	records.Usage
	GBSeconds, Cost float64
}

type usageView struct {
	Report     *records.UsageReport
	From, To   string // the form's dates (YYYY-MM-DD, UTC)
	ByFunction []usageSum
	ByDay      []usageSum
	CSVLink    string
	Currency   string
	Empty      bool
	Restricted bool
}

// usageRange reads the report's range from ?from=&to= (dates, UTC; to is
// included), by default this month so far.
func (c *Console) usageRange(r *http.Request) (from, to time.Time, err error) {
	now := c.cfg.Now().UTC()
	from = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	to = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	q := r.URL.Query()
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		if s := q.Get(p.name); s != "" {
			if *p.t, err = time.Parse(time.DateOnly, s); err != nil {
				return from, to, &apiError{Status: http.StatusBadRequest, Type: "InvalidParameterValueException",
					Message: fmt.Sprintf("%s must be a date such as 2026-12-01, not %q", p.name, s)}
			}
		}
	}
	if to.Before(from) {
		return from, to, &apiError{Status: http.StatusBadRequest, Type: "InvalidParameterValueException",
			Message: "to (" + to.Format(time.DateOnly) + ") is before from (" + from.Format(time.DateOnly) + ")"}
	}
	return from, to, nil
}

func (v *visit) usageReport(from, to time.Time) (*records.UsageReport, error) {
	q := url.Values{"granularity": {records.Day}, "since": {from.Format(time.RFC3339)},
		"until": {to.AddDate(0, 0, 1).Format(time.RFC3339)}}
	var rep records.UsageReport
	return &rep, v.get("/nimbus/v1/usage?"+q.Encode(), &rep)
}

// usage is GET /console/usage?from=&to=: usage and costs by function and
// by day.
func (c *Console) usage(w http.ResponseWriter, r *http.Request, v *visit) error {
	from, to, err := c.usageRange(r)
	if err != nil {
		return err
	}
	rep, err := v.usageReport(from, to)
	if err != nil {
		return err
	}
	q := url.Values{"from": {from.Format(time.DateOnly)}, "to": {to.Format(time.DateOnly)}}
	view := usageView{Report: rep, From: from.Format(time.DateOnly), To: to.Format(time.DateOnly),
		CSVLink: Prefix + "usage.csv?" + q.Encode(), Currency: rep.Prices.Currency, Empty: len(rep.Rows) == 0}
	view.ByFunction = sumBy(rep, func(r *records.UsageRow) string { return r.Function })
	view.ByDay = sumBy(rep, func(r *records.UsageRow) string { return r.Start.Format(time.DateOnly) })
	c.render(w, r, http.StatusOK, "usage", page{Title: "Usage", Nav: "usage", Visit: v, Data: view})
	return nil
}

// sumBy adds rep's rows up by key, sorted by key.
func sumBy(rep *records.UsageReport, key func(*records.UsageRow) string) []usageSum {
	idx := map[string]int{}
	var out []usageSum
	for i := range rep.Rows {
		row := &rep.Rows[i]
		k := key(row)
		j, ok := idx[k]
		if !ok {
			j = len(out)
			idx[k] = j
			out = append(out, usageSum{Label: k})
		}
		out[j].Add(&row.Usage)
		out[j].GBSeconds += row.GBSeconds
		out[j].Cost += row.Cost
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out
}

// usageCSV is GET /console/usage.csv?from=&to=: the report's rows, one
// per function per day, as CSV.
func (c *Console) usageCSV(w http.ResponseWriter, r *http.Request, v *visit) error {
	from, to, err := c.usageRange(r)
	if err != nil {
		return err
	}
	rep, err := v.usageReport(from, to)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="nimbus-usage-%s-to-%s.csv"`, from.Format(time.DateOnly), to.Format(time.DateOnly)))
	cw := csv.NewWriter(w)
	_ = cw.Write(append([]string{"day", "function"}, records.CSVColumns...))
	for i := range rep.Rows {
		row := &rep.Rows[i]
		_ = cw.Write(append([]string{row.Start.Format(time.DateOnly), row.Function}, row.CSVFields(row.GBSeconds, row.Cost)...))
	}
	cw.Flush()
	return cw.Error()
}
