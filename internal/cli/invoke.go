package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus"
)

// invokeFlags are invoke's flags.
type invokeFlags struct {
	payload string
	logs    bool
	async   bool
	taskID  string
}

func newInvokeCmd(g *globals) *cobra.Command {
	var f invokeFlags
	cmd := &cobra.Command{
		Use:   "invoke NAME[:VERSION|:ALIAS]",
		Short: "Invoke a function and print its response, or enqueue an event (--async)",
		Long: `Invoke runs a function once, synchronously, and prints its response to stdout.
NAME:VERSION runs a published version (nimbus publish), NAME:ALIAS the
version an alias routes the request to (nimbus alias set).
--payload is the event: JSON text, @FILE to read it from a file, or @- to
read it from stdin; it must be valid JSON (default {}). --logs prints the
tail of the invocation's log to stderr.

When the function fails, its error payload is printed to stdout and the
command exits with status 1.

--async hands the event to the Async Service instead and prints the id of
its task once the event is stored (nimbus tasks get NAME ID follows it).
--task-id sets that id: submitting the same id again, while its record is
kept, runs the event once and answers with the same task.`,
		Example: `  nimbus invoke hello --payload '{"name": "Ada"}'
  nimbus invoke hello:live                       # the version alias live points at
  nimbus invoke hello:3                          # version 3
  nimbus invoke hello --payload @event.json --logs
  echo '{"name": "Ada"}' | nimbus invoke hello --payload @-
  nimbus invoke hello --async --payload '{"name": "Ada"}'
  nimbus invoke hello --async --task-id order-42 --payload @order.json -o json`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			var data []byte
			if cmd.Flags().Changed("payload") {
				var err error
				if data, err = readPayload(f.payload, cmd.InOrStdin()); err != nil {
					return err
				}
			}
			if f.async {
				return invokeAsync(cmd, c, g, args[0], data, f.taskID)
			}
			return invokeSync(cmd, c, args[0], data, f.logs)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.payload, "payload", "", "the event: JSON, @FILE or @- for stdin")
	fl.BoolVar(&f.logs, "logs", false, "print the tail of the invocation's log to stderr")
	fl.BoolVar(&f.async, "async", false, "invoke asynchronously: enqueue the event and print its task id")
	fl.StringVar(&f.taskID, "task-id", "", "with --async: the task's id, making the submission idempotent")
	return cmd
}

// check refuses flags that do not go together.
func (f *invokeFlags) check(cmd *cobra.Command) error {
	switch {
	case f.async && f.logs:
		return errors.New("--logs cannot be used with --async: an asynchronous invocation has no log tail (nimbus logs NAME shows its log)")
	case cmd.Flags().Changed("task-id") && !f.async:
		return errors.New("--task-id needs --async")
	case cmd.Flags().Changed("task-id") && f.taskID == "":
		return errors.New("--task-id must not be empty")
	}
	return nil
}

// invokeSync runs the function and prints its response.
func invokeSync(cmd *cobra.Command, c *client, name string, data []byte, logs bool) error {
	in := &lambda.InvokeInput{FunctionName: aws.String(name), Payload: data}
	if logs {
		in.LogType = types.LogTypeTail
	}
	out, err := c.lambda.Invoke(cmd.Context(), in)
	if err != nil {
		return err
	}
	if logs && out.LogResult != nil {
		if err := writeLogTail(cmd.ErrOrStderr(), *out.LogResult); err != nil {
			return err
		}
	}
	w := cmd.OutOrStdout()
	if _, err := w.Write(out.Payload); err != nil {
		return err
	}
	if len(out.Payload) > 0 && !bytes.HasSuffix(out.Payload, []byte("\n")) {
		fmt.Fprintln(w)
	}
	if out.FunctionError != nil {
		return functionError(out.Payload, *out.FunctionError)
	}
	return nil
}

// taskIDHeader carries an asynchronous invocation's task id, both ways.
const taskIDHeader = "X-Nimbus-Task-Id"

// asyncResult is what invoke --async -o json prints.
type asyncResult struct {
	TaskID string `json:"taskId"`
}

// invokeAsync submits the event with InvocationType Event and prints its
// task id.
func invokeAsync(cmd *cobra.Command, c *client, g *globals, name string, data []byte, taskID string) error {
	in := &lambda.InvokeInput{FunctionName: aws.String(name), InvocationType: types.InvocationTypeEvent, Payload: data}
	var opts []func(*lambda.Options)
	if taskID != "" {
		opts = append(opts, func(o *lambda.Options) {
			o.APIOptions = append(o.APIOptions, smithyhttp.SetHeaderValue(taskIDHeader, taskID))
		})
	}
	out, err := c.lambda.Invoke(cmd.Context(), in, opts...)
	if err != nil {
		return err
	}
	id := asyncTaskID(out.ResultMetadata)
	if id == "" {
		return errors.New("the server accepted the event but answered with no task id")
	}
	if g.json() {
		return writeJSON(cmd.OutOrStdout(), asyncResult{TaskID: id})
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "Task %s enqueued.\n", id)
	return err
}

// asyncTaskID reads the task id from the answer's X-Nimbus-Task-Id, or
// else its request id (the same on Nimbus).
func asyncTaskID(md middleware.Metadata) string {
	if resp, ok := awsmw.GetRawResponse(md).(*smithyhttp.Response); ok {
		if id := resp.Header.Get(taskIDHeader); id != "" {
			return id
		}
	}
	id, _ := awsmw.GetRequestIDMetadata(md)
	return id
}

// readPayload returns the payload v names (JSON text, @FILE or @-), checked
// to be JSON.
func readPayload(v string, stdin io.Reader) ([]byte, error) {
	var data []byte
	var err error
	switch {
	case v == "@-":
		data, err = io.ReadAll(stdin)
	case strings.HasPrefix(v, "@"):
		data, err = os.ReadFile(v[1:])
	default:
		data = []byte(v)
	}
	if err != nil {
		return nil, fmt.Errorf("read --payload: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("invalid --payload: it is empty; an event is JSON, such as {}")
	}
	var x any
	if err := json.Unmarshal(data, &x); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("invalid --payload: not valid JSON: %v (at byte %d)", err, se.Offset)
		}
		return nil, fmt.Errorf("invalid --payload: not valid JSON: %v", err)
	}
	return data, nil
}

// writeLogTail decodes X-Amz-Log-Result and writes it to w.
func writeLogTail(w io.Writer, b64 string) error {
	tail, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return fmt.Errorf("decode the log tail: %w", err)
	}
	if _, err := w.Write(tail); err != nil {
		return err
	}
	if len(tail) > 0 && !bytes.HasSuffix(tail, []byte("\n")) {
		_, err = fmt.Fprintln(w)
	}
	return err
}

// functionError describes the error payload of a failed invocation.
func functionError(payload []byte, header string) error {
	var fe nimbus.FunctionError
	if err := json.Unmarshal(payload, &fe); err != nil || (fe.Type == "" && fe.Message == "") {
		return fmt.Errorf("function error: %s", header)
	}
	return fmt.Errorf("function error: %w", &fe)
}
