package console

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// fnRow is a row of the functions' table.
type fnRow struct {
	fnConfig
	Invocations, Errors int64
}

type functionsView struct {
	Rows      []fnRow
	Total     int
	Query     string
	Sort, Dir string
}

// sortKeys are the sortable columns of the functions' table.
var sortKeys = map[string]func(a, b *fnRow) int{
	"name":        func(a, b *fnRow) int { return strings.Compare(a.FunctionName, b.FunctionName) },
	"runtime":     func(a, b *fnRow) int { return strings.Compare(a.Runtime, b.Runtime) },
	"memory":      func(a, b *fnRow) int { return cmp.Compare(a.MemorySize, b.MemorySize) },
	"state":       func(a, b *fnRow) int { return strings.Compare(a.State, b.State) },
	"modified":    func(a, b *fnRow) int { return a.Modified().Compare(b.Modified()) },
	"invocations": func(a, b *fnRow) int { return cmp.Compare(a.Invocations, b.Invocations) },
	"errors":      func(a, b *fnRow) int { return cmp.Compare(a.Errors, b.Errors) },
}

// functions is GET /console/functions?q=&sort=&dir=: the functions'
// table, filtered (q matches name, runtime or state) and sorted
// server-side, so that the address of a view can be bookmarked.
func (c *Console) functions(w http.ResponseWriter, r *http.Request, v *visit) error {
	q := r.URL.Query()
	view := functionsView{Query: strings.TrimSpace(q.Get("q")), Sort: q.Get("sort"), Dir: q.Get("dir")}
	if _, ok := sortKeys[view.Sort]; !ok {
		view.Sort = "name"
	}
	if view.Dir != "desc" {
		view.Dir = "asc"
	}
	fns, err := v.listFunctions()
	if err != nil {
		return err
	}
	day, err := v.stats("", "24h", true)
	if err != nil {
		return err
	}
	per := make(map[string]*statsPoint, len(day.Functions))
	for i := range day.Functions {
		per[day.Functions[i].Function] = &day.Functions[i]
	}
	view.Total = len(fns)
	needle := strings.ToLower(view.Query)
	for _, f := range fns {
		if needle != "" && !strings.Contains(strings.ToLower(f.FunctionName+" "+f.Runtime+" "+f.State), needle) {
			continue
		}
		row := fnRow{fnConfig: f}
		if s := per[f.FunctionName]; s != nil {
			row.Invocations, row.Errors = s.Invocations, s.Errors
		}
		view.Rows = append(view.Rows, row)
	}
	by := sortKeys[view.Sort]
	slices.SortStableFunc(view.Rows, func(a, b fnRow) int {
		if n := by(&a, &b); n != 0 {
			if view.Dir == "desc" {
				return -n
			}
			return n
		}
		return strings.Compare(a.FunctionName, b.FunctionName)
	})
	if isHTMX(r) && r.Header.Get("HX-Target") == "fn-table" {
		c.fragment(w, "fn-table", view)
		return nil
	}
	c.render(w, r, http.StatusOK, "functions", page{Title: "Functions", Nav: "functions", Visit: v, Data: view})
	return nil
}

// sortLink is the address of the table sorted by key: the other way round
// when it is sorted by key already.
func sortLink(v functionsView, key string) string {
	dir := "asc"
	if v.Sort == key && v.Dir == "asc" {
		dir = "desc"
	}
	q := url.Values{"sort": {key}, "dir": {dir}}
	if v.Query != "" {
		q.Set("q", v.Query)
	}
	return Prefix + "functions?" + q.Encode()
}

// sortClass marks the column the table is sorted by.
func sortClass(v functionsView, key string) string {
	if v.Sort != key {
		return ""
	}
	return "sorted " + v.Dir
}
