package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus"
)

// functionView is a function as the CLI prints it with -o json: the fields
// of Lambda's FunctionConfiguration that Nimbus fills, under Lambda's names.
type functionView struct {
	FunctionName                 string
	FunctionArn                  string `json:",omitempty"`
	Runtime                      string
	Handler                      string `json:",omitempty"`
	Description                  string `json:",omitempty"`
	MemorySize                   int32
	Timeout                      int32
	CodeSize                     int64
	CodeSha256                   string
	LastModified                 string
	RevisionId                   string
	State                        string
	StateReason                  string `json:",omitempty"`
	LastUpdateStatus             string
	LastUpdateStatusReason       string                      `json:",omitempty"`
	Environment                  *envView                    `json:",omitempty"`
	ReservedConcurrentExecutions *int32                      `json:",omitempty"`
	EphemeralStorage             *struct{ Size int32 }       `json:",omitempty"`
	TracingConfig                *struct{ Mode string }      `json:",omitempty"`
	LoggingConfig                *loggingView                `json:",omitempty"`
	DeadLetterConfig             *struct{ TargetArn string } `json:",omitempty"`
	// PackageType is Zip or Image, as the node answers it.
	PackageType string `json:",omitempty"`
	// ImageUri and ResolvedImageUri are an image function's image as
	// given and the digest it runs (GetFunction's Code; get and deploy
	// only), ImageConfig its overrides.
	ImageUri         string     `json:",omitempty"`
	ResolvedImageUri string     `json:",omitempty"`
	ImageConfig      *imageView `json:",omitempty"`
}

// imageView is Lambda's ImageConfig.
type imageView struct {
	EntryPoint       []string `json:",omitempty"`
	Command          []string `json:",omitempty"`
	WorkingDirectory string   `json:",omitempty"`
}

type envView struct {
	Variables map[string]string
}

type loggingView struct {
	LogFormat           string
	ApplicationLogLevel string `json:",omitempty"`
	SystemLogLevel      string `json:",omitempty"`
	LogGroup            string `json:",omitempty"`
}

func viewOf(fc *types.FunctionConfiguration) functionView {
	v := functionView{
		FunctionName:           aws.ToString(fc.FunctionName),
		FunctionArn:            aws.ToString(fc.FunctionArn),
		Runtime:                string(fc.Runtime),
		Handler:                aws.ToString(fc.Handler),
		Description:            aws.ToString(fc.Description),
		MemorySize:             aws.ToInt32(fc.MemorySize),
		Timeout:                aws.ToInt32(fc.Timeout),
		CodeSize:               fc.CodeSize,
		CodeSha256:             aws.ToString(fc.CodeSha256),
		LastModified:           aws.ToString(fc.LastModified),
		RevisionId:             aws.ToString(fc.RevisionId),
		State:                  string(fc.State),
		StateReason:            aws.ToString(fc.StateReason),
		LastUpdateStatus:       string(fc.LastUpdateStatus),
		LastUpdateStatusReason: aws.ToString(fc.LastUpdateStatusReason),
		PackageType:            string(fc.PackageType),
	}
	if r := fc.ImageConfigResponse; r != nil && r.ImageConfig != nil {
		c := r.ImageConfig
		if len(c.EntryPoint) > 0 || len(c.Command) > 0 || aws.ToString(c.WorkingDirectory) != "" {
			v.ImageConfig = &imageView{EntryPoint: c.EntryPoint, Command: c.Command, WorkingDirectory: aws.ToString(c.WorkingDirectory)}
		}
	}
	if fc.Environment != nil && len(fc.Environment.Variables) > 0 {
		v.Environment = &envView{Variables: fc.Environment.Variables}
	}
	v.settingsOf(fc)
	return v
}

// functionViewOf is viewOf a GetFunction answer, with its image.
func functionViewOf(out *lambda.GetFunctionOutput) functionView {
	v := viewOf(out.Configuration)
	if c := out.Code; c != nil {
		v.ImageUri, v.ResolvedImageUri = aws.ToString(c.ImageUri), aws.ToString(c.ResolvedImageUri)
	}
	if out.Concurrency != nil {
		v.ReservedConcurrentExecutions = out.Concurrency.ReservedConcurrentExecutions
	}
	return v
}

// settingsOf fills the view's /tmp, tracing, logging and dead-letter
// settings from what the node answered.
func (v *functionView) settingsOf(fc *types.FunctionConfiguration) {
	if e := fc.EphemeralStorage; e != nil {
		v.EphemeralStorage = &struct{ Size int32 }{aws.ToInt32(e.Size)}
	}
	if t := fc.TracingConfig; t != nil {
		v.TracingConfig = &struct{ Mode string }{string(t.Mode)}
	}
	if l := fc.LoggingConfig; l != nil {
		v.LoggingConfig = &loggingView{LogFormat: string(l.LogFormat), ApplicationLogLevel: string(l.ApplicationLogLevel),
			SystemLogLevel: string(l.SystemLogLevel), LogGroup: aws.ToString(l.LogGroup)}
	}
	if d := fc.DeadLetterConfig; d != nil && aws.ToString(d.TargetArn) != "" {
		v.DeadLetterConfig = &struct{ TargetArn string }{aws.ToString(d.TargetArn)}
	}
}

// writeJSON writes v indented, with a final newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeFunctionTable writes one row per function.
func writeFunctionTable(w io.Writer, fns []functionView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tRUNTIME\tMEMORY\tTIMEOUT\tSTATE\tLAST-MODIFIED")
	for _, f := range fns {
		fmt.Fprintf(tw, "%s\t%s\t%dMB\t%ds\t%s\t%s\n",
			f.FunctionName, dash(f.Runtime), f.MemorySize, f.Timeout, f.state(), dash(displayTime(f.LastModified)))
	}
	return tw.Flush()
}

// writeFunctionDetail writes one function as "Field: value" lines.
func writeFunctionDetail(w io.Writer, f functionView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Name", f.FunctionName)
	if f.FunctionArn != "" {
		row("ARN", f.FunctionArn)
	}
	row("Runtime", dash(f.Runtime))
	row("Handler", dash(f.Handler))
	f.imageRows(row)
	if f.Description != "" {
		row("Description", f.Description)
	}
	row("Memory", strconv.Itoa(int(f.MemorySize))+"MB")
	row("Timeout", strconv.Itoa(int(f.Timeout))+"s")
	f.settingRows(row)
	row("State", f.state())
	if f.StateReason != "" {
		row("State reason", f.StateReason)
	}
	if f.LastUpdateStatusReason != "" {
		row("Update reason", f.LastUpdateStatusReason)
	}
	row("Code size", humanBytes(f.CodeSize))
	row("Code SHA-256", dash(f.CodeSha256))
	row("Last modified", dash(displayTime(f.LastModified)))
	row("Revision", dash(f.RevisionId))
	if f.ReservedConcurrentExecutions != nil {
		row("Reserved concurrency", strconv.Itoa(int(*f.ReservedConcurrentExecutions)))
	}
	if f.Environment != nil {
		for i, k := range sortedKeys(f.Environment.Variables) {
			label := ""
			if i == 0 {
				label = "Environment:"
			}
			fmt.Fprintf(tw, "%s\t%s=%s\n", label, k, f.Environment.Variables[k])
		}
	}
	return tw.Flush()
}

// imageRows adds an image function's package type, image, digest and
// overrides.
func (f *functionView) imageRows(row func(k, v string)) {
	if f.PackageType != nimbus.PackageImage {
		return
	}
	row("Package type", f.PackageType)
	row("Image", dash(f.ImageUri))
	_, digest, _ := strings.Cut(f.ResolvedImageUri, "@")
	row("Image digest", dash(digest))
	if c := f.ImageConfig; c != nil {
		if len(c.EntryPoint) > 0 {
			row("Entry point", quoteArgs(c.EntryPoint))
		}
		if len(c.Command) > 0 {
			row("Command", quoteArgs(c.Command))
		}
		if c.WorkingDirectory != "" {
			row("Working dir", c.WorkingDirectory)
		}
	}
}

// quoteArgs shows a command's arguments, each quoted if it needs to be.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r == '\'' || r == 0x7f }) {
			q[i] = strconv.Quote(a)
		}
	}
	return strings.Join(q, " ")
}

// settingRows adds the settings that differ from their defaults.
func (f *functionView) settingRows(row func(k, v string)) {
	if e := f.EphemeralStorage; e != nil && e.Size != nimbus.DefaultEphemeralMB {
		row("Ephemeral storage", strconv.Itoa(int(e.Size))+"MB")
	}
	if t := f.TracingConfig; t != nil && t.Mode == nimbus.TracingActive {
		row("Tracing", t.Mode)
	}
	if l := f.LoggingConfig; l != nil && l.LogFormat == nimbus.LogFormatJSON {
		row("Logs", fmt.Sprintf("JSON (application %s, system %s)", dash(l.ApplicationLogLevel), dash(l.SystemLogLevel)))
	}
	if d := f.DeadLetterConfig; d != nil {
		row("Dead letters", d.TargetArn)
	}
}

// state is the STATE column: the function's state, or its update's when one
// is running or failed.
func (f *functionView) state() string {
	switch f.LastUpdateStatus {
	case nimbus.UpdateInProgress:
		return "Updating"
	case nimbus.UpdateFailed:
		return "UpdateFailed"
	}
	return dash(f.State)
}

// lambdaTime is the format of Lambda's LastModified.
const lambdaTime = "2006-01-02T15:04:05.000-0700"

// displayTime shows Lambda's LastModified as RFC 3339 in UTC, to the second.
func displayTime(v string) string {
	t, err := time.Parse(lambdaTime, v)
	if err != nil {
		return v
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
