package taskindex

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
)

// defaultLimit is the page size of a List without a limit.
const defaultLimit = 100

// Get returns a task's latest record, from the cache, else the database;
// found is false when the index has none.
func (x *Index) Get(fn, id string) (t nimbus.Task, found bool, err error) {
	k := key{fn, id}
	t, ok, gen := x.cache.get(k)
	if ok {
		return t, true, nil
	}
	row := x.get.QueryRowContext(context.Background(), fn, id)
	t, found, err = scanTask(row)
	if err != nil {
		return nimbus.Task{}, false, fmt.Errorf("task index: get %s: %w", id, err)
	}
	if found {
		x.cache.fill(k, t, gen)
	}
	return t, found, nil
}

// List returns a page of fn's tasks, oldest first by (Created, ID): those
// with status o.Status ("": any) created in [o.Since, o.Until) (a zero
// time: open), at most o.Limit of them (0: 100), after the task named
// o.Marker, and the marker of the next page ("" when there is none). The
// page continues after the marker task's place even if that task no longer
// matches the filter; an unknown marker (a task swept since) starts from the
// beginning. The marker lookup and the page are each one indexed query, so
// a page costs the page, not the number of tasks. Errors: nimbus.ErrInvalid
// for a negative limit.
func (x *Index) List(fn string, o async.ListOptions) ([]nimbus.Task, string, error) {
	if o.Limit < 0 {
		return nil, "", fmt.Errorf("task index: list: limit %d: %w", o.Limit, nimbus.ErrInvalid)
	}
	if o.Limit == 0 {
		o.Limit = defaultLimit
	}
	if fn == "" {
		return nil, "", nil
	}
	ctx := context.Background()
	q, args, err := x.listQuery(ctx, fn, o)
	if err != nil {
		return nil, "", fmt.Errorf("task index: list: %w", err)
	}
	page, err := x.query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("task index: list: %w", err)
	}
	if len(page) > o.Limit {
		return page[:o.Limit], page[o.Limit-1].ID, nil
	}
	return page, "", nil
}

// listQuery builds the page query: one more row than the limit tells
// whether there is a next page. Of the lower bounds (Since and the marker's
// place) only the later one is written, so that the index seeks to it
// rather than scanning from the other.
func (x *Index) listQuery(ctx context.Context, fn string, o async.ListOptions) (string, []any, error) {
	var q strings.Builder
	q.WriteString(`SELECT rec FROM tasks WHERE fn = ?`)
	args := []any{fn}
	if o.Status != "" {
		q.WriteString(` AND status = ?`)
		args = append(args, o.Status)
	}
	created, after, err := x.marker(ctx, fn, o.Marker)
	if err != nil {
		return "", nil, err
	}
	since := nanos(o.Since)
	switch {
	case after && (o.Since.IsZero() || created >= since):
		q.WriteString(` AND (created, id) > (?, ?)`)
		args = append(args, created, o.Marker)
	case !o.Since.IsZero():
		q.WriteString(` AND created >= ?`)
		args = append(args, since)
	}
	if !o.Until.IsZero() {
		q.WriteString(` AND created < ?`)
		args = append(args, nanos(o.Until))
	}
	q.WriteString(` ORDER BY created, id LIMIT ?`)
	return q.String(), append(args, o.Limit+1), nil
}

// marker returns the creation time of fn's task id; found is false when
// id is "" or no task of fn.
func (x *Index) marker(ctx context.Context, fn, id string) (created int64, found bool, err error) {
	if id == "" {
		return 0, false, nil
	}
	err = x.r.QueryRowContext(ctx, `SELECT created FROM tasks WHERE fn = ? AND id = ?`, fn, id).Scan(&created)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("marker: %w", err)
	}
	return created, true, nil
}

// query returns the tasks of the rows of q, which selects rec.
func (x *Index) query(ctx context.Context, q string, args ...any) ([]nimbus.Task, error) {
	rows, err := x.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []nimbus.Task
	for rows.Next() {
		var rec []byte
		if err := rows.Scan(&rec); err != nil {
			return nil, err
		}
		var t nimbus.Task
		if err := json.Unmarshal(rec, &t); err != nil {
			return nil, fmt.Errorf("decode task: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Counts returns how many of fn's tasks are in each status (read from a
// table that every write keeps up to date, not counted).
func (x *Index) Counts(fn string) (map[string]int, error) {
	rows, err := x.r.QueryContext(context.Background(), `SELECT status, n FROM counts WHERE fn = ?`, fn)
	if err != nil {
		return nil, fmt.Errorf("task index: counts: %w", err)
	}
	defer rows.Close()
	out := make(map[string]int)
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return nil, fmt.Errorf("task index: counts: %w", err)
		}
		out[status] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("task index: counts: %w", err)
	}
	return out, nil
}
