package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/api"
)

// The API's answers, as the console reads them.

// fnConfig is a function's configuration (Lambda's FunctionConfiguration).
type fnConfig struct {
	FunctionName     string
	FunctionArn      string
	Runtime          string
	Handler          string
	Description      string
	CodeSize         int64
	Timeout          int
	MemorySize       int
	LastModified     string
	CodeSha256       string
	State            string
	StateReason      string
	LastUpdateStatus string
	PackageType      string
	Architectures    []string
	Environment      *struct{ Variables map[string]string }
	EphemeralStorage struct{ Size int }
	TracingConfig    struct{ Mode string }
	// Nimbus's extensions.
	NimbusHttpConcurrency    int
	NimbusIdleTimeoutSeconds int
	NimbusNetwork            string
}

// Modified is LastModified as a time.
func (f fnConfig) Modified() time.Time {
	t, _ := time.Parse("2006-01-02T15:04:05.000-0700", f.LastModified)
	return t
}

// listFunctions reads every function the visitor sees.
func (v *visit) listFunctions() ([]fnConfig, error) {
	var out []fnConfig
	marker := ""
	for {
		var page struct {
			Functions  []fnConfig
			NextMarker *string
		}
		q := "/2015-03-31/functions?MaxItems=10000"
		if marker != "" {
			q += "&Marker=" + url.QueryEscape(marker)
		}
		if err := v.get(q, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Functions...)
		if page.NextMarker == nil || *page.NextMarker == "" || len(page.Functions) == 0 {
			return out, nil
		}
		marker = *page.NextMarker
	}
}

// statsPoint is one period of GET /nimbus/v1/stats (and a window's total).
type statsPoint struct {
	Time           time.Time `json:",omitzero"`
	Function       string    `json:",omitempty"`
	Invocations    int64
	Errors         int64
	Throttles      int64
	PlatformErrors int64
	ColdStarts     int64
	GBSeconds      float64
	P50, P99       float64
	Concurrency    float64
}

// statsReport is the answer of GET /nimbus/v1/stats and
// /nimbus/v1/functions/{name}/stats.
type statsReport struct {
	Window       string
	Step         int
	Since, Until time.Time
	Points       []statsPoint
	Total        statsPoint
	Functions    []statsPoint
}

// windows are the windows of the charts.
var windows = []string{"1h", "24h", "7d"}

func validWindow(w string) bool {
	for _, x := range windows {
		if w == x {
			return true
		}
	}
	return false
}

// stats reads the statistics of fn ("" for every function the visitor
// sees) over window.
func (v *visit) stats(fn, window string, byFunction bool) (*statsReport, error) {
	path := "/nimbus/v1/stats?window=" + window
	if fn != "" {
		path = "/nimbus/v1/functions/" + url.PathEscape(fn) + "/stats?window=" + window
	} else if byFunction {
		path += "&by=function"
	}
	var rep statsReport
	return &rep, v.get(path, &rep)
}

// chart is what console.js draws: uPlot's data (times in Unix seconds,
// then one array per series) and the series' labels.
type chart struct {
	ID     string      `json:"id"`
	Title  string      `json:"title"`
	Unit   string      `json:"unit,omitempty"`
	Labels []string    `json:"labels"`
	Data   [][]float64 `json:"data"`
	Bars   bool        `json:"bars,omitempty"`
}

// chartOf makes a chart of rep's points, one series per field.
func chartOf(id, title, unit string, rep *statsReport, labels []string, fields ...func(*statsPoint) float64) chart {
	c := chart{ID: id, Title: title, Unit: unit, Labels: labels, Data: make([][]float64, 1+len(fields))}
	for i := range rep.Points {
		p := &rep.Points[i]
		c.Data[0] = append(c.Data[0], float64(p.Time.Unix()))
		for j, f := range fields {
			c.Data[j+1] = append(c.Data[j+1], f(p))
		}
	}
	return c
}

// triggers reads the triggers of fn ("" for every function's, in state).
func (v *visit) triggers(fn, state string) ([]api.TriggerView, error) {
	var out api.TriggerList
	path := "/nimbus/v1/triggers?state=" + url.QueryEscape(state)
	if fn != "" {
		path = "/nimbus/v1/functions/" + url.PathEscape(fn) + "/triggers"
	}
	return out.Triggers, v.get(path, &out)
}

// rawJSON is a JSON answer kept as it came (a test invoke's result).
type rawJSON = json.RawMessage

// isHTMX reports whether r is an htmx request (which wants a fragment).
func isHTMX(r *http.Request) bool { return r.Header.Get("HX-Request") != "" }
