package console

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	"github.com/nimbus-serverless/nimbus/internal/records"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// fnPath is the API path of function name.
func fnPath(prefix, name string) string { return prefix + url.PathEscape(name) }

type functionView struct {
	Config      fnConfig
	Reserved    *int
	EnvNames    []string
	Window      string
	Windows     []string
	Charts      chartsView
	Invocations invocationsView
	Triggers    triggersView
	Async       asyncView
	Usage       *records.UsageReport
	Payload     string
}

type chartsView struct {
	Name, Window string
	Total        statsPoint
	Charts       []chart
}

type invocationsView struct {
	Name    string
	Records []records.Record
}

type triggersView struct {
	Name     string
	CSRF     string
	Triggers []api.TriggerView
}

type asyncView struct {
	Name        string
	CSRF        string
	Tasks       []taskRow
	DeadLetters []deadLetterRow
}

// function is GET /console/functions/{name}?window=: one function.
func (c *Console) function(w http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	if bare, err := registry.ParseName(name); err == nil && bare != name {
		u := fnURL(bare) // an ARN or name:$LATEST: the page's own address
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, u, http.StatusSeeOther)
		return nil
	}
	var got struct {
		Configuration fnConfig
		Concurrency   *struct{ ReservedConcurrentExecutions *int }
	}
	if err := v.get(fnPath("/2015-03-31/functions/", name), &got); err != nil {
		return err
	}
	window := windowOf(r)
	view := functionView{Config: got.Configuration, Window: window, Windows: windows, Payload: "{}"}
	if got.Concurrency != nil {
		view.Reserved = got.Concurrency.ReservedConcurrentExecutions
	}
	if env := got.Configuration.Environment; env != nil {
		for k := range env.Variables {
			view.EnvNames = append(view.EnvNames, k)
		}
		sort.Strings(view.EnvNames)
	}
	var err error
	if view.Charts, err = v.charts(name, window); err != nil {
		return err
	}
	if view.Invocations, err = v.invocations(name); err != nil {
		return err
	}
	if view.Triggers, err = v.triggersOf(name); err != nil {
		return err
	}
	if view.Async, err = v.async(name); err != nil {
		return err
	}
	view.Usage = &records.UsageReport{}
	since := c.cfg.Now().UTC().AddDate(0, 0, -30).Format(time.RFC3339)
	if err := v.get("/nimbus/v1/usage?granularity=day&function="+url.QueryEscape(name)+"&since="+since, view.Usage); err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "function", page{Title: name, Nav: "functions", Visit: v, Data: view})
	return nil
}

// windowOf is the chart window a request asks for (1h by default).
func windowOf(r *http.Request) string {
	if w := r.URL.Query().Get("window"); validWindow(w) {
		return w
	}
	return "1h"
}

func (v *visit) charts(name, window string) (chartsView, error) {
	rep, err := v.stats(name, window, false)
	if err != nil {
		return chartsView{}, err
	}
	step := map[string]string{"1h": "minute", "24h": "15 minutes", "7d": "hour"}[window]
	return chartsView{Name: name, Window: window, Total: rep.Total, Charts: []chart{
		chartOf("ch-inv", "Invocations and errors per "+step, "", rep, []string{"Invocations", "Errors", "Throttles"}, invocations, errorsOf, throttles),
		chartOf("ch-dur", "Duration", "ms", rep, []string{"p50", "p99"}, p50, p99),
		chartOf("ch-cold", "Cold starts per "+step, "", rep, []string{"Cold starts"}, coldStarts),
		chartOf("ch-conc", "Concurrency (average executions at once)", "", rep, []string{"Concurrency"}, concurrency),
		chartOf("ch-gbs", "GB-seconds per "+step, "GB-s", rep, []string{"GB-seconds"}, gbSeconds),
	}}, nil
}

// functionCharts is GET /console/functions/{name}/charts?window= (htmx).
func (c *Console) functionCharts(w http.ResponseWriter, r *http.Request, v *visit) error {
	view, err := v.charts(r.PathValue("name"), windowOf(r))
	if err != nil {
		return err
	}
	c.fragment(w, "charts", view)
	return nil
}

// recentInvocations is how many records the function page shows.
const recentInvocations = 20

func (v *visit) invocations(name string) (invocationsView, error) {
	var list api.InvocationList
	err := v.get(fnPath("/nimbus/v1/functions/", name)+"/invocations?limit="+strconv.Itoa(recentInvocations), &list)
	return invocationsView{Name: name, Records: list.Invocations}, err
}

// functionInvocations is GET /console/functions/{name}/invocations (htmx).
func (c *Console) functionInvocations(w http.ResponseWriter, r *http.Request, v *visit) error {
	view, err := v.invocations(r.PathValue("name"))
	if err != nil {
		return err
	}
	c.fragment(w, "invocations", view)
	return nil
}

func (v *visit) triggersOf(name string) (triggersView, error) {
	ts, err := v.triggers(name, "")
	return triggersView{Name: name, CSRF: v.csrf, Triggers: ts}, err
}

// functionTriggers is GET /console/functions/{name}/triggers (htmx).
func (c *Console) functionTriggers(w http.ResponseWriter, r *http.Request, v *visit) error {
	view, err := v.triggersOf(r.PathValue("name"))
	if err != nil {
		return err
	}
	c.fragment(w, "triggers", view)
	return nil
}

// triggerAction is POST /console/functions/{name}/triggers/{trigger}/
// enable or disable.
func (c *Console) triggerAction(w http.ResponseWriter, r *http.Request, v *visit) error {
	name, action := r.PathValue("name"), r.PathValue("action")
	if action != "enable" && action != "disable" {
		return &apiError{Status: http.StatusNotFound, Type: "NotFound", Message: "A trigger can be enabled or disabled, not " + strconv.Quote(action) + "."}
	}
	if err := v.post(fnPath("/nimbus/v1/functions/", name)+"/triggers/"+url.PathEscape(r.PathValue("trigger"))+"/"+action, nil, nil); err != nil {
		return err
	}
	return c.after(w, r, v, name, "triggers")
}

// after answers an action: the section it changed for htmx, the function's
// page for a plain form.
func (c *Console) after(w http.ResponseWriter, r *http.Request, v *visit, name, section string) error {
	if !isHTMX(r) {
		redirect(w, r, fnURL(name)+"#"+section)
		return nil
	}
	switch section {
	case "triggers":
		view, err := v.triggersOf(name)
		if err != nil {
			return err
		}
		c.fragment(w, "triggers", view)
	default:
		view, err := v.async(name)
		if err != nil {
			return err
		}
		c.fragment(w, "async", view)
	}
	return nil
}

// logTail decodes an invoke's X-Amz-Log-Result.
func logTail(h http.Header) string {
	b, _ := base64.StdEncoding.DecodeString(h.Get("X-Amz-Log-Result"))
	return string(b)
}

// reportDuration finds the Duration of a REPORT line.
var reportDuration = lazyre.New(`REPORT RequestId: \S+\s+Duration: ([0-9.]+) ms`)
