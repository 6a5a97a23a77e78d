// Package metricstest reads a scrape of Prometheus metrics in tests.
package metricstest

import (
	"io"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// Parse reads a scrape in the text exposition format.
func Parse(t testing.TB, r io.Reader) Families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return fams
}

// Value sums the series of metric name whose labels include the given
// pairs (name, value, name, value...): a counter's or gauge's value, a
// histogram's sample count. ok is false when no series matches.
func (f Families) Value(name string, labels ...string) (v float64, ok bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if !matches(m, labels) {
			continue
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v, ok
}

// Sum is the sum of the samples of the histogram series that match.
func (f Families) Sum(name string, labels ...string) float64 {
	var s float64
	if fam := f[name]; fam != nil {
		for _, m := range fam.GetMetric() {
			if m.Histogram != nil && matches(m, labels) {
				s += m.Histogram.GetSampleSum()
			}
		}
	}
	return s
}

// Series counts the series of metric name whose labels include the pairs.
func (f Families) Series(name string, labels ...string) int {
	n := 0
	if fam := f[name]; fam != nil {
		for _, m := range fam.GetMetric() {
			if matches(m, labels) {
				n++
			}
		}
	}
	return n
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Get sends GET url, with HTTP Basic credentials unless user is "", and
// returns the answer's status, header and body.
func Get(t testing.TB, url, user, password string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}
