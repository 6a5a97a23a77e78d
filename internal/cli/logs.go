package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus/internal/fnlog"
)

// logRecord is one line of a function's log, as /nimbus/v1/functions/{name}/logs
// sends it.
type logRecord struct {
	Time      string `json:"time"`
	Function  string `json:"function"`
	RequestID string `json:"requestId"`
	Line      string `json:"line"`
}

func newLogsCmd(g *globals) *cobra.Command {
	var follow bool
	var limit int
	var since, until, requestID, filter string
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a function's log lines",
		Long: `Logs prints a function's most recent log lines (those matching --since,
--until, --request-id and --filter), oldest first. --follow keeps printing
new lines until interrupted. --since and --until take an RFC 3339 time or a
duration before now (1h, 30m). With -o json each line is the raw record:
{"time", "function", "requestId", "line"}.`,
		Example: `  nimbus logs hello --limit 20
  nimbus logs hello --since 1h --filter ERROR
  nimbus logs hello --request-id 9f3c2b1e-5d7a-4c8e-9b0f-1a2b3c4d5e6f
  nimbus logs hello --follow --limit 1`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			q := url.Values{}
			if cmd.Flags().Changed("limit") {
				// limit=0 prints no history (useful with --follow).
				if limit < 0 || limit > fnlog.MaxLimit {
					return fmt.Errorf("--limit must be 0 to %d, not %d", fnlog.MaxLimit, limit)
				}
				q.Set("limit", strconv.Itoa(limit))
			}
			if err := logFilters(q, since, until, requestID, filter, follow); err != nil {
				return err
			}
			ctx := cmd.Context()
			if follow {
				q.Set("follow", "true")
				var stop func()
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt)
				defer stop()
			}
			resp, err := c.get(ctx, "/nimbus/v1/functions/"+url.PathEscape(args[0])+"/logs", q)
			if err != nil {
				if follow && ctx.Err() != nil {
					return nil
				}
				return err
			}
			defer resp.Body.Close()
			err = copyLogs(cmd.OutOrStdout(), resp.Body, g.json())
			if ctx.Err() != nil {
				return nil // interrupted: the normal end of --follow
			}
			return err
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until interrupted")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most the last N lines first (default 1000)")
	cmd.Flags().StringVar(&since, "since", "", "only lines from this time: RFC 3339 or a duration before now (1h)")
	cmd.Flags().StringVar(&until, "until", "", "only lines up to this time: RFC 3339 or a duration before now")
	cmd.Flags().StringVar(&requestID, "request-id", "", "only the lines of this request")
	cmd.Flags().StringVar(&filter, "filter", "", "only lines containing this text")
	return cmd
}

// logFilters checks the filter flags and sets their parameters.
func logFilters(q url.Values, since, until, requestID, filter string, follow bool) error {
	now := time.Now()
	var from, to time.Time
	var err error
	if since != "" {
		if from, err = fnlog.ParseTime(since, now); err != nil {
			return fmt.Errorf("--since: %v", err)
		}
		q.Set("since", since)
	}
	if until != "" {
		if follow {
			return errors.New("--until cannot be used with --follow")
		}
		if to, err = fnlog.ParseTime(until, now); err != nil {
			return fmt.Errorf("--until: %v", err)
		}
		if !from.IsZero() && to.Before(from) {
			return fmt.Errorf("--until (%s) is before --since (%s)", until, since)
		}
		q.Set("until", until)
	}
	if requestID != "" {
		q.Set("request_id", requestID)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	return nil
}

// copyLogs reads JSON records from r until its end and writes their lines
// to w, or with raw the records themselves, one a line.
func copyLogs(w io.Writer, r io.Reader, raw bool) error {
	dec := json.NewDecoder(r)
	for {
		var msg json.RawMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read logs: %w", err)
		}
		if raw {
			if _, err := fmt.Fprintf(w, "%s\n", msg); err != nil {
				return err
			}
			continue
		}
		var rec logRecord
		if err := json.Unmarshal(msg, &rec); err != nil {
			return fmt.Errorf("read logs: %w", err)
		}
		if _, err := fmt.Fprintln(w, strings.TrimRight(rec.Line, "\r\n")); err != nil {
			return err
		}
	}
}
