package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/version"
)

// page is what the layout renders: a page's title, its visitor (nil on
// the login page) and its own data.
type page struct {
	Title string
	Nav   string // the active menu entry
	Visit *visit
	Data  any
}

// CSRF is the visitor's CSRF token, for forms and htmx's headers.
func (p page) CSRF() string {
	if p.Visit == nil {
		return ""
	}
	return p.Visit.csrf
}

// Who names the visitor.
func (p page) Who() string {
	if p.Visit == nil {
		return ""
	}
	return p.Visit.p.Name
}

// SignedIn reports whether the console asks for a login (and so offers a
// logout).
func (p page) SignedIn() bool { return p.Visit != nil && p.Visit.c.cfg.Secrets != nil }

// Version is Nimbus's version.
func (page) Version() string { return version.String() }

// pageNames are the templates that are whole pages.
var pageNames = []string{"login", "link", "error", "overview", "functions", "function", "logs", "usage"}

// parseTemplates parses the layout and fragments once, then each page on
// a clone of them; "fragments" is the layout and fragments alone, for
// htmx's partial answers.
func parseTemplates() (map[string]*template.Template, error) {
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/fragments.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	out := map[string]*template.Template{"fragments": base}
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// render writes a page (through a buffer, so that a template error is a
// clean 500 rather than half a page).
func (c *Console) render(w http.ResponseWriter, _ *http.Request, status int, name string, p page) {
	c.execute(w, status, c.pages[name], "layout", p)
}

// fragment writes one template of the fragments (an htmx partial answer).
func (c *Console) fragment(w http.ResponseWriter, name string, data any) {
	c.execute(w, http.StatusOK, c.pages["fragments"], name, data)
}

func (c *Console) execute(w http.ResponseWriter, status int, t *template.Template, name string, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		c.log.Error("console template", "template", name, "err", err)
		http.Error(w, "The console failed to render this page.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

var funcs = template.FuncMap{
	"when":      when,
	"ms":        millis,
	"mb":        func(n int) string { return fmt.Sprintf("%d MB", n) },
	"gbs":       func(f float64) string { return trimFloat(f, 4) },
	"money":     money,
	"json":      toJSON,
	"fnURL":     fnURL,
	"count":     count,
	"pct":       pct,
	"query":     urlQueryEscape,
	"truncate":  truncate,
	"add":       func(a, b int) int { return a + b },
	"lower":     strings.ToLower,
	"sortLink":  sortLink,
	"sortClass": sortClass,
	"dict":      dict,
	"logLink":   logLink,
}

// logLink is the address of the log of request id of function name, which
// started at start (the log is read from a minute before; nil or zero:
// from an hour before now).
func logLink(name, id string, start any) string {
	q := url.Values{"request_id": {id}}
	if t, ok := start.(time.Time); ok && !t.IsZero() {
		q.Set("since", t.Add(-time.Minute).UTC().Format(time.RFC3339Nano))
	}
	return fnURL(name) + "/logs?" + q.Encode()
}

// dict makes a map of its key, value arguments (for a template's data).
func dict(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("dict: odd number of arguments")
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
		}
		m[k] = kv[i+1]
	}
	return m, nil
}

// when is a time in UTC that the browser rewrites in its own time zone.
func when(t time.Time) template.HTML {
	if t.IsZero() {
		return "–"
	}
	t = t.UTC()
	return template.HTML(`<time datetime="` + t.Format(time.RFC3339Nano) + `">` + t.Format("2006-01-02 15:04:05") + ` UTC</time>`)
}

// millis formats a duration in milliseconds.
func millis(ms float64) string {
	switch {
	case ms == 0:
		return "0 ms"
	case ms < 10:
		return trimFloat(ms, 2) + " ms"
	case ms < 10_000:
		return trimFloat(ms, 0) + " ms"
	}
	return trimFloat(ms/1000, 1) + " s"
}

func trimFloat(f float64, prec int) string {
	s := fmt.Sprintf("%.*f", prec, f)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func money(f float64, currency string) string {
	if f != 0 && math.Abs(f) < 0.01 {
		return fmt.Sprintf("%.6f %s", f, currency)
	}
	return fmt.Sprintf("%.2f %s", f, currency)
}

// count formats an integer with thin separators of thousands.
func count(n int64) string {
	if n < 0 {
		return "-" + count(-n)
	}
	s := fmt.Sprint(n)
	if n < 10_000 {
		return s
	}
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

func pct(part, whole int64) string {
	if whole == 0 {
		return "0 %"
	}
	return trimFloat(100*float64(part)/float64(whole), 1) + " %"
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func fnURL(name string) string { return Prefix + "functions/" + url.PathEscape(name) }

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8Start(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// assetNames lists the embedded assets (for tests).
func assetNames() []string {
	var out []string
	_ = fs.WalkDir(assetFS, "assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, "assets/"))
		}
		return nil
	})
	return out
}
