package console

import (
	"net/http"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/auth"
)

type overviewView struct {
	Node NodeInfo
	// Admin: the node's instances and memory are shown to admin keys
	// only, as /metrics is.
	Admin         bool
	Uptime        string
	Functions     int
	Hour, Day     statsPoint
	Charts        []chart
	ErrorTriggers []api.TriggerView
}

// overview is GET /console/: the node, the functions' count, the last
// hour's and day's figures with charts, and the triggers in Error.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, v *visit) error {
	fns, err := v.listFunctions()
	if err != nil {
		return err
	}
	hour, err := v.stats("", "1h", false)
	if err != nil {
		return err
	}
	day, err := v.stats("", "24h", false)
	if err != nil {
		return err
	}
	bad, err := v.triggers("", "Error")
	if err != nil {
		return err
	}
	node := c.cfg.Node()
	view := overviewView{Node: node, Admin: v.p.Role == auth.Admin, Functions: len(fns), Hour: hour.Total, Day: day.Total, ErrorTriggers: bad,
		Charts: []chart{
			chartOf("ov-hour", "Last hour: invocations per minute", "", hour, []string{"Invocations", "Errors", "Throttles"},
				invocations, errorsOf, throttles),
			chartOf("ov-day", "Last 24 hours: invocations per 15 minutes", "", day, []string{"Invocations", "Errors", "Throttles"},
				invocations, errorsOf, throttles),
			chartOf("ov-gbs", "Last 24 hours: GB-seconds per 15 minutes", "GB-s", day, []string{"GB-seconds"}, gbSeconds),
		}}
	if !node.Started.IsZero() {
		view.Uptime = c.cfg.Now().Sub(node.Started).Round(time.Second).String()
	}
	c.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Visit: v, Data: view})
	return nil
}

func invocations(p *statsPoint) float64 { return float64(p.Invocations) }
func errorsOf(p *statsPoint) float64    { return float64(p.Errors) }
func throttles(p *statsPoint) float64   { return float64(p.Throttles) }
func coldStarts(p *statsPoint) float64  { return float64(p.ColdStarts) }
func gbSeconds(p *statsPoint) float64   { return p.GBSeconds }
func p50(p *statsPoint) float64         { return p.P50 }
func p99(p *statsPoint) float64         { return p.P99 }
func concurrency(p *statsPoint) float64 { return p.Concurrency }

// ping is GET /console/ping: the node answers and the session holds
// (console.js shows a banner while it does not).
func (c *Console) ping(w http.ResponseWriter, _ *http.Request, _ *visit) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, err := w.Write([]byte(`{"ok":true}`))
	return err
}
