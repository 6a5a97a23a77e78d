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

	"github.com/spf13/cobra"
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
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a function's recent log lines",
		Long: `Logs prints a function's recent log lines, oldest first. --follow keeps
printing new lines until interrupted. With -o json each line is the raw
record: {"time", "function", "requestId", "line"}.`,
		Example: `  nimbus logs hello --limit 20
  nimbus logs hello --follow --limit 1`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			q := url.Values{}
			if cmd.Flags().Changed("limit") {
				// limit=0 prints no history (useful with --follow).
				if limit < 0 {
					return fmt.Errorf("--limit must be 0 or more, not %d", limit)
				}
				q.Set("limit", strconv.Itoa(limit))
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
	return cmd
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
