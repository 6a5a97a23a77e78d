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
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus"
)

func newInvokeCmd(g *globals) *cobra.Command {
	var payload string
	var logs bool
	cmd := &cobra.Command{
		Use:   "invoke NAME",
		Short: "Invoke a function and print its response",
		Long: `Invoke runs a function once, synchronously, and prints its response to stdout.
--payload is the event: JSON text, @FILE to read it from a file, or @- to
read it from stdin; it must be valid JSON (default {}). --logs prints the
tail of the invocation's log to stderr.

When the function fails, its error payload is printed to stdout and the
command exits with status 1.`,
		Example: `  nimbus invoke hello --payload '{"name": "Ada"}'
  nimbus invoke hello --payload @event.json --logs
  echo '{"name": "Ada"}' | nimbus invoke hello --payload @-`,
		Args: cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			var data []byte
			if cmd.Flags().Changed("payload") {
				var err error
				if data, err = readPayload(payload, cmd.InOrStdin()); err != nil {
					return err
				}
			}
			in := &lambda.InvokeInput{FunctionName: aws.String(args[0]), Payload: data}
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
		}),
	}
	cmd.Flags().StringVar(&payload, "payload", "", "the event: JSON, @FILE or @- for stdin")
	cmd.Flags().BoolVar(&logs, "logs", false, "print the tail of the invocation's log to stderr")
	return cmd
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
