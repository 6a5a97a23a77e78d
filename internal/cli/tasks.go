package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus"
)

// taskList is a page of a function's tasks as GET
// /nimbus/v1/functions/{name}/tasks sends it, and what `tasks ls -o json`
// prints.
type taskList struct {
	Tasks      []nimbus.Task `json:"tasks"`
	NextMarker string        `json:"nextMarker,omitempty"`
}

// Page sizes of the task and dead-letter lists, as the API allows them.
const (
	minPageSize = 1
	maxPageSize = 1000
)

// taskStatuses are the statuses `tasks ls --status` accepts.
var taskStatuses = []string{
	nimbus.TaskEnqueued, nimbus.TaskRunning, nimbus.TaskRetrying, nimbus.TaskSucceeded,
	nimbus.TaskFailed, nimbus.TaskExpired, nimbus.TaskStopping, nimbus.TaskStopped,
}

func newTasksCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tasks",
		Short: "List, show and stop a function's asynchronous invocations",
		Long: `Every asynchronous invocation (nimbus invoke --async, or Lambda's Invoke
with InvocationType Event) has a task record: its status, attempts, times,
the start of its result or error, and where its outcome was sent. Records
are kept for the node's --async-retention.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newTasksLsCmd(g), newTasksGetCmd(g), newTasksStopCmd(g))
	return cmd
}

// tasksLsFlags are `tasks ls`'s flags.
type tasksLsFlags struct {
	status, since, until string
	page                 pageFlags
}

func newTasksLsCmd(g *globals) *cobra.Command {
	var f tasksLsFlags
	cmd := &cobra.Command{
		Use:     "ls FUNCTION",
		Aliases: []string{"list"},
		Short:   "List a function's tasks, oldest first",
		Long: `Ls lists a function's tasks, oldest first, one page (--limit) at a time;
--all fetches every page. --since and --until filter by creation time: an
RFC 3339 time, or a duration (1h, 30m, 2d) meaning that long ago.`,
		Example: `  nimbus tasks ls resize
  nimbus tasks ls resize --status Failed --since 1h
  nimbus tasks ls resize --since 2026-11-24T10:00:00Z --until 2026-11-24T11:00:00Z --all -o json`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := checkName("function name", args[0]); err != nil {
				return err
			}
			q, err := f.query(cmd, time.Now())
			if err != nil {
				return err
			}
			tasks, next, err := collect(q, f.page.all, func(q url.Values) ([]nimbus.Task, string, error) {
				var page taskList
				err := c.getJSON(cmd.Context(), functionPath(args[0], "tasks"), q, &page)
				return page.Tasks, page.NextMarker, err
			})
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), taskList{Tasks: tasks, NextMarker: next})
			}
			return printPage(cmd, len(tasks), next, "tasks", func(w io.Writer) error { return writeTaskTable(w, tasks) })
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.status, "status", "", "only tasks in this status: "+strings.Join(taskStatuses, ", "))
	fl.StringVar(&f.since, "since", "", "only tasks created at or after this time (RFC 3339, or a duration ago: 1h)")
	fl.StringVar(&f.until, "until", "", "only tasks created before this time (RFC 3339, or a duration ago: 10m)")
	f.page.register(cmd, "tasks")
	return cmd
}

// query checks the flags and returns the list's query; durations in --since
// and --until count back from now.
func (f *tasksLsFlags) query(cmd *cobra.Command, now time.Time) (url.Values, error) {
	q, err := f.page.query(cmd)
	if err != nil {
		return nil, err
	}
	if f.status != "" {
		status, err := parseStatus(f.status)
		if err != nil {
			return nil, err
		}
		q.Set("status", status)
	}
	if err := setWhen(q, f.since, f.until, now); err != nil {
		return nil, err
	}
	return q, nil
}

// setWhen checks --since and --until (RFC 3339, or a duration counting back
// from now) and sets them in q.
func setWhen(q url.Values, sinceFlag, untilFlag string, now time.Time) error {
	since, err := parseWhen("--since", sinceFlag, now)
	if err != nil {
		return err
	}
	until, err := parseWhen("--until", untilFlag, now)
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && !since.Before(until) {
		return fmt.Errorf("--since (%s) must be before --until (%s)", since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	for k, t := range map[string]time.Time{"since": since, "until": until} {
		if !t.IsZero() {
			q.Set(k, t.Format(time.RFC3339Nano))
		}
	}
	return nil
}

// parseStatus returns the task status v names, in any case.
func parseStatus(v string) (string, error) {
	for _, s := range taskStatuses {
		if strings.EqualFold(s, v) {
			return s, nil
		}
	}
	return "", fmt.Errorf("invalid --status %q: want one of %s", v, strings.Join(taskStatuses, ", "))
}

// parseWhen reads a --since or --until value: an RFC 3339 time, or a
// duration before now (Go's units, and d for days). "" is the zero time.
func parseWhen(flag, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok && err != nil {
		n, perr := strconv.ParseFloat(days, 64)
		d, err = time.Duration(n*24*float64(time.Hour)), perr
	}
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("invalid %s %q: want an RFC 3339 time such as 2026-11-24T10:00:00Z, or a duration ago such as 90s, 1h or 2d", flag, v)
	}
	return now.Add(-d).UTC(), nil
}

func newTasksGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "get FUNCTION TASK-ID",
		Short:   "Show a task: its status, attempts, times, result or error, and destination",
		Example: `  nimbus tasks get resize 01JD3V8Q5W2N4K7R9T6Y1X0ZAB`,
		Args:    cobra.ExactArgs(2),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := checkTaskArgs(args); err != nil {
				return err
			}
			var t nimbus.Task
			if err := c.getJSON(cmd.Context(), functionPath(args[0], "tasks", args[1]), nil, &t); err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), t)
			}
			return writeTaskDetail(cmd.OutOrStdout(), t)
		}),
	}
}

func newTasksStopCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stop FUNCTION TASK-ID...",
		Short: "Stop tasks: an enqueued one never runs, a running one is killed",
		Long: `Stop stops tasks that have not finished: an enqueued or retrying task never
runs (again); a running one is killed and marked Stopped. Stopping a task
that has finished is an error.`,
		Example: `  nimbus tasks stop resize 01JD3V8Q5W2N4K7R9T6Y1X0ZAB`,
		Args:    cobra.MinimumNArgs(2),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := checkTaskArgs(args); err != nil {
				return err
			}
			var stopped []nimbus.Task
			for _, id := range args[1:] {
				var t nimbus.Task
				if err := c.post(cmd.Context(), functionPath(args[0], "tasks", id, "stop"), nil, &t); err != nil {
					return err
				}
				stopped = append(stopped, t)
				if !g.json() {
					printStopped(cmd.OutOrStdout(), t, id)
				}
			}
			if !g.json() {
				return nil
			}
			if len(stopped) == 1 {
				return writeJSON(cmd.OutOrStdout(), stopped[0])
			}
			return writeJSON(cmd.OutOrStdout(), stopped)
		}),
	}
}

func printStopped(w io.Writer, t nimbus.Task, id string) {
	if t.ID != "" {
		id = t.ID
	}
	if t.Status == nimbus.TaskStopping {
		fmt.Fprintf(w, "Stopping task %s: it was running.\n", id)
		return
	}
	fmt.Fprintf(w, "Stopped task %s.\n", id)
}

// checkTaskArgs checks FUNCTION TASK-ID... arguments for emptiness; the
// server checks the rest.
func checkTaskArgs(args []string) error {
	if err := checkName("function name", args[0]); err != nil {
		return err
	}
	for _, id := range args[1:] {
		if err := checkName("task id", id); err != nil {
			return err
		}
	}
	return nil
}

func checkName(what, v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("the %s must not be empty", what)
	}
	return nil
}

// functionPath is the path of a function's Nimbus resource, each part
// escaped.
func functionPath(fn string, parts ...string) string {
	var b strings.Builder
	b.WriteString("/nimbus/v1/functions/")
	b.WriteString(url.PathEscape(fn))
	for _, p := range parts {
		b.WriteString("/")
		b.WriteString(url.PathEscape(p))
	}
	return b.String()
}

// pageFlags are the paging flags of a list command.
type pageFlags struct {
	limit  int
	all    bool
	marker string
}

func (p *pageFlags) register(cmd *cobra.Command, noun string) {
	fl := cmd.Flags()
	fl.IntVar(&p.limit, "limit", 0, fmt.Sprintf("%s per page, %d to %d (default 100)", noun, minPageSize, maxPageSize))
	fl.BoolVar(&p.all, "all", false, "fetch every page, not only the first")
	fl.StringVar(&p.marker, "marker", "", "start after this marker (printed when there are more "+noun+")")
}

// query checks the flags and returns their query parameters.
func (p *pageFlags) query(cmd *cobra.Command) (url.Values, error) {
	q := url.Values{}
	if cmd.Flags().Changed("limit") {
		if p.limit < minPageSize || p.limit > maxPageSize {
			return nil, fmt.Errorf("--limit must be %d to %d, not %d", minPageSize, maxPageSize, p.limit)
		}
		q.Set("limit", strconv.Itoa(p.limit))
	}
	if p.marker != "" {
		q.Set("marker", p.marker)
	}
	return q, nil
}

// collect calls page for the first page, and with all for the following
// ones, and returns the items and the marker of the page after them.
func collect[T any](q url.Values, all bool, page func(url.Values) ([]T, string, error)) ([]T, string, error) {
	items := []T{}
	for {
		got, next, err := page(q)
		if err != nil {
			return nil, "", err
		}
		items = append(items, got...)
		if !all || next == "" {
			return items, next, nil
		}
		if next == q.Get("marker") {
			return nil, "", fmt.Errorf("the server returned the page marker %q twice", next)
		}
		q.Set("marker", next)
	}
}

// printPage prints a list's table, or says it is empty, and tells how to
// see the next page.
func printPage(cmd *cobra.Command, n int, next, noun string, table func(io.Writer) error) error {
	if n == 0 {
		_, err := fmt.Fprintf(cmd.ErrOrStderr(), "No %s.\n", noun)
		return err
	}
	if err := table(cmd.OutOrStdout()); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "More %s: --marker %s shows the next page, --all every page.\n", noun, next)
	}
	return nil
}

// writeTaskTable writes one row per task.
func writeTaskTable(w io.Writer, tasks []nimbus.Task) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tATTEMPTS\tCREATED\tDURATION\tRESULT/ERROR")
	for _, t := range tasks {
		outcome := t.Result
		if t.Error != "" {
			outcome = t.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", t.ID, dash(t.Status), t.Attempts, tableTime(t.Created),
			durationText(t.DurationMs), dash(truncateText(outcome, 48)))
	}
	return tw.Flush()
}

// writeTaskDetail writes every field of a task as "Field: value" lines.
func writeTaskDetail(w io.Writer, t nimbus.Task) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, dash(oneLineText(v))) }
	row("ID", t.ID)
	row("Function", t.Function)
	row("Status", t.Status)
	row("Attempts", strconv.Itoa(t.Attempts))
	row("Created", detailTime(t.Created))
	row("Started", detailTime(t.Started))
	row("Finished", detailTime(t.Finished))
	row("Updated", detailTime(t.Updated))
	row("Duration", durationText(t.DurationMs))
	row("Result", t.Result)
	row("Error", t.Error)
	row("Destination", t.Destination)
	row("Destination status", t.DestinationStatus)
	return tw.Flush()
}

// tableTime and detailTime show a time in UTC, to the second in tables and
// to the millisecond in details; the zero time is "-".
func tableTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func detailTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// durationText shows a run time in milliseconds: "0.4ms", "12ms", "1.23s".
func durationText(ms float64) string {
	switch {
	case ms <= 0:
		return "-"
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	case ms < 1000:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	}
	return time.Duration(ms * float64(time.Millisecond)).Round(10 * time.Millisecond).String()
}

// oneLineText collapses the white space of s (line breaks, tabs, runs of
// spaces) so that it fits one table cell.
func oneLineText(s string) string { return strings.Join(strings.Fields(s), " ") }

// truncateText is oneLineText cut to at most n runes, "..." marking a cut.
func truncateText(s string, n int) string {
	s = oneLineText(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-3]) + "..."
	}
	return s
}

// getJSON sends a signed GET to one of Nimbus's own endpoints and decodes
// its JSON answer into out.
func (c *client) getJSON(ctx context.Context, path string, query url.Values, out any) error {
	resp, err := c.get(ctx, path, query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeAnswer(resp, out)
}

// post sends a signed POST with body (JSON, or nil for none) to one of
// Nimbus's own endpoints and decodes its JSON answer into out. A response
// other than 2xx becomes an *apiError.
func (c *client) post(ctx context.Context, path string, body []byte, out any) error {
	return c.do(ctx, http.MethodPost, path, body, out)
}

// do sends a SigV4-signed request with a JSON payload (none when empty) and
// decodes a JSON answer into out (nil, or a 204: ignored).
func (c *client) do(ctx context.Context, method, path string, payload []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint+path, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(payload)
	if len(payload) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := c.sign(req, hex.EncodeToString(sum[:])); err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readAPIError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return decodeAnswer(resp, out)
}

func decodeAnswer(resp *http.Response, out any) error {
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("empty body")
		}
		return fmt.Errorf("read the answer of %s %s: %w", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}
