package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Sample is one row's figure in one round.
type Sample struct {
	Group  string  // the rows compared together, e.g. "16 connections"
	Row    string  // e.g. "proxy"
	Round  int     // from 0
	Value  float64 // req/s for warm rows, milliseconds for cold rows
	P50    time.Duration
	P99    time.Duration
	Errors int
}

// Table collects samples and prints them as ratios to the group's baseline
// row of the same round.
type Table struct {
	Baseline string // the row every other is divided by, e.g. "direct"
	samples  []Sample
}

// Add records s.
func (t *Table) Add(s Sample) { t.samples = append(t.samples, s) }

// Line is one printed row: the median over rounds of the ratio to the
// baseline of the same round, with its range, and the medians of the
// absolute figures.
type Line struct {
	Group, Row              string
	Ratio, RatioLo, RatioHi float64 // 0 when no round had both figures
	Value                   float64
	P50, P99                time.Duration
	Errors                  int // summed over rounds
	Rounds                  int
}

// Lines are the table's rows, in the order their groups and rows were
// first added.
func (t *Table) Lines() []Line {
	base := map[string]float64{} // group and round -> the baseline's value
	for _, s := range t.samples {
		if s.Row == t.Baseline {
			base[fmt.Sprint(s.Group, "\x00", s.Round)] = s.Value
		}
	}
	var lines []Line
	for _, g := range t.order(func(s Sample) string { return s.Group }) {
		for _, r := range t.order(func(s Sample) string { return s.Group + "\x00" + s.Row }) {
			if group, row, _ := strings.Cut(r, "\x00"); group == g {
				lines = append(lines, t.line(g, row, base))
			}
		}
	}
	return lines
}

// order is the distinct keys of the samples, in the order of their first
// sample.
func (t *Table) order(key func(Sample) string) []string {
	var keys []string
	for _, s := range t.samples {
		if k := key(s); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// line folds the rounds of one row.
func (t *Table) line(group, row string, base map[string]float64) Line {
	l := Line{Group: group, Row: row}
	var ratios, values []float64
	var p50s, p99s []time.Duration
	for _, s := range t.samples {
		if s.Group != group || s.Row != row {
			continue
		}
		l.Rounds++
		l.Errors += s.Errors
		values, p50s, p99s = append(values, s.Value), append(p50s, s.P50), append(p99s, s.P99)
		if b := base[fmt.Sprint(group, "\x00", s.Round)]; b > 0 {
			ratios = append(ratios, s.Value/b)
		}
	}
	l.Value, l.P50, l.P99 = median(values), median(p50s), median(p99s)
	if len(ratios) > 0 {
		l.Ratio, l.RatioLo, l.RatioHi = median(ratios), slices.Min(ratios), slices.Max(ratios)
	}
	return l
}

// median is the middle value (the lower of the two middle ones for an even
// count), or zero for none.
func median[T float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[(len(xs)-1)/2]
}

// WriteWarm prints the warm rows as markdown: one table per group.
func (t *Table) WriteWarm(w io.Writer) {
	t.write(w, "req/s | p50 | p99", func(l Line) string {
		return fmt.Sprintf("%.0f | %s | %s", l.Value, ms(l.P50), ms(l.P99))
	})
}

// WriteCold prints the cold rows as markdown: time to the first answer.
func (t *Table) WriteCold(w io.Writer) {
	t.write(w, "ms, median of rounds' medians", func(l Line) string { return fmt.Sprintf("%.1f", l.Value) })
}

// WriteAsync prints the async rows as markdown: invokes per second.
func (t *Table) WriteAsync(w io.Writer) {
	t.write(w, "per second", func(l Line) string { return fmt.Sprintf("%.0f", l.Value) })
}

// write prints one markdown table per group, with the figures' columns
// (named by head, cells by cells) between the ratio and the errors.
func (t *Table) write(w io.Writer, head string, cells func(Line) string) {
	group := ""
	for _, l := range t.Lines() {
		if l.Group != group {
			group = l.Group
			cols := strings.Count(head, "|") + 1
			fmt.Fprintf(w, "\n**%s**\n\n| path | x %s (median, min-max) | %s | errors |\n|%s\n",
				group, t.Baseline, head, strings.Repeat(" --- |", cols+3))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d |\n", l.Row, ratio(l), cells(l), l.Errors)
	}
}

// ratio prints a line's ratio and its range, or "-" when it has none.
func ratio(l Line) string {
	if l.Ratio == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3fx (%.3f-%.3f)", l.Ratio, l.RatioLo, l.RatioHi)
}

// ms prints d in milliseconds, "-" for none.
func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}
