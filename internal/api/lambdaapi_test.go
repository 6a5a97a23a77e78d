package api_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// apiDoc is the page listing every Lambda operation and its status.
const apiDoc = "../../docs/lambda-api.md"

// plannedUnknown are the operations allowed to answer
// UnknownOperationException for now: those docs/lambda-api.md marks
// "planned". Remove an operation from here, and update its row, when it
// lands; the test fails until both are done.
var plannedUnknown = []string{}

// TestLambdaAPIDoc keeps docs/lambda-api.md true: its table names exactly
// the operations of aws-sdk-go-v2's Lambda client, with the method and path
// the client sends, and each operation sent by that client to a real node
// answers as the table says: never UnknownOperationException but for the
// planned operations (plannedUnknown), and the documented error for those
// not supported.
func TestLambdaAPIDoc(t *testing.T) {
	ops := sdkOperations(t)
	rows := readAPIDoc(t, apiDoc)
	for _, name := range sortedKeys(ops) {
		if _, ok := rows[name]; !ok {
			t.Errorf("%s: an operation of the Lambda client that %s does not list", name, apiDoc)
		}
	}
	for _, name := range sortedKeys(rows) {
		if _, ok := ops[name]; !ok {
			t.Errorf("%s: listed in %s, but the Lambda client has no such operation", name, apiDoc)
		}
	}
	for _, name := range plannedUnknown {
		if r, ok := rows[name]; !ok || r.status != "planned" {
			t.Errorf("%s: in plannedUnknown but not planned in %s", name, apiDoc)
		}
	}
	for _, name := range sortedKeys(rows) {
		if rows[name].status == "planned" && !slices.Contains(plannedUnknown, name) {
			t.Errorf("%s: planned in %s but not in plannedUnknown", name, apiDoc)
		}
	}
	if t.Failed() {
		return
	}

	c := client(nodetest.Start(t, nil))
	for _, name := range sortedKeys(ops) {
		t.Run(name, func(t *testing.T) { checkOperation(t, c, ops[name], rows[name]) })
	}
	t.Logf("allowed to answer UnknownOperationException until they land (planned): %s", strings.Join(plannedUnknown, ", "))
}

// docRow is an operation's row of docs/lambda-api.md.
type docRow struct {
	method, path string // path may end in a query: ?List=ALL
	status       string // works, partial, not supported, planned
	errorType    string // not supported: the error it answers
}

// rowRE matches a table row: | `Name` | `METHOD /path` | status | note |
var (
	rowRE         = regexp.MustCompile("^\\| `(\\w+)` \\| `([A-Z]+) (/[^`]*)` \\| ([^|]*) \\|")
	statusRE      = regexp.MustCompile("^(works|partial: .+|not supported: `(\\w+)`|planned: issue \\d+)$")
	labelRE       = regexp.MustCompile(`\{(\w+)\}`)
	unknownOpType = "UnknownOperationException"
)

// readAPIDoc parses the operations' rows of the page at path.
func readAPIDoc(t *testing.T, path string) map[string]docRow {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]docRow{}
	for i, line := range strings.Split(string(b), "\n") {
		m := rowRE.FindStringSubmatch(line)
		if m == nil {
			if strings.HasPrefix(line, "| `") {
				t.Errorf("%s:%d: a row not of the form | `Operation` | `METHOD /path` | status | note |", path, i+1)
			}
			continue
		}
		status := strings.TrimSpace(m[4])
		s := statusRE.FindStringSubmatch(status)
		if s == nil {
			t.Errorf("%s:%d: %s: status %q is not works, partial: ..., not supported: `ErrorType` or planned: issue N", path, i+1, m[1], status)
			continue
		}
		if _, dup := rows[m[1]]; dup {
			t.Errorf("%s:%d: %s listed twice", path, i+1, m[1])
		}
		kind, _, _ := strings.Cut(status, ":")
		rows[m[1]] = docRow{method: m[2], path: m[3], status: kind, errorType: s[2]}
	}
	return rows
}

// sdkOperations are the Lambda client's operations: its methods of the
// form Name(context.Context, *NameInput, ...func(*lambda.Options)).
func sdkOperations(t *testing.T) map[string]reflect.Method {
	t.Helper()
	ctxType := reflect.TypeFor[context.Context]()
	optsType := reflect.TypeFor[[]func(*lambda.Options)]()
	ops := map[string]reflect.Method{}
	typ := reflect.TypeFor[*lambda.Client]()
	for i := range typ.NumMethod() {
		m := typ.Method(i)
		ft := m.Type // the receiver is In(0)
		if ft.NumIn() != 4 || !ft.IsVariadic() || ft.In(1) != ctxType || ft.In(3) != optsType ||
			ft.In(2).Kind() != reflect.Pointer || ft.In(2).Elem().Name() != m.Name+"Input" {
			continue
		}
		ops[m.Name] = m
	}
	if len(ops) < 80 {
		t.Fatalf("found %d operations on *lambda.Client: the client's shape changed", len(ops))
	}
	return ops
}

// checkOperation sends op with the client to the node, its path's labels
// filled with placeholders and nothing else (the client's validation of
// required fields is taken out), and checks the request and the answer
// against row.
func checkOperation(t *testing.T, c *lambda.Client, op reflect.Method, row docRow) {
	in := reflect.New(op.Type.In(2).Elem())
	fillLabels(t, in.Elem(), row.path)
	rec := &recordingClient{}
	opt := func(o *lambda.Options) {
		o.HTTPClient = rec
		o.Retryer = aws.NopRetryer{}
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			_, _ = s.Initialize.Remove("OperationInputValidation") // absent when nothing is required
			return nil
		})
	}
	res := op.Func.Call([]reflect.Value{reflect.ValueOf(c), reflect.ValueOf(t.Context()), in, reflect.ValueOf(opt)})
	if out, ok := res[0].Interface().(*lambda.InvokeWithResponseStreamOutput); ok && out != nil {
		_ = out.GetStream().Close()
	}
	err, _ := res[1].Interface().(error)

	if rec.req == nil {
		t.Fatalf("the client sent nothing: %v", err)
	}
	if !matchesRequest(row, rec.req) {
		t.Errorf("the client sends %s %s; %s says %s %s", rec.req.Method, rec.req.URL.RequestURI(), apiDoc, row.method, row.path)
	}

	code := "none (success)"
	var ae smithy.APIError
	switch {
	case errors.As(err, &ae):
		code = ae.ErrorCode()
	case err != nil:
		t.Errorf("answer is not a Lambda error: %v", err)
		return
	}
	t.Logf("%s %s: %s", rec.req.Method, rec.req.URL.EscapedPath(), code)
	planned := slices.Contains(plannedUnknown, op.Name)
	switch {
	case code == unknownOpType && !planned:
		t.Errorf("answers %s (%v): route it, or mark it planned in %s and plannedUnknown", code, err, apiDoc)
	case code != unknownOpType && planned:
		t.Errorf("answers %s, no longer %s: update its status in %s and remove it from plannedUnknown", code, unknownOpType, apiDoc)
	case row.status == "not supported" && code != row.errorType:
		t.Errorf("answers %s (%v); %s says %s", code, err, apiDoc, row.errorType)
	case row.status == "not supported" && ae.ErrorMessage() == "":
		t.Errorf("answers %s with no message", code)
	case row.status == "not supported" && httpStatus(err) != unsupportedStatus[code]:
		t.Errorf("answers %s with status %d, not %d", code, httpStatus(err), unsupportedStatus[code])
	}
}

// unsupportedStatus is the HTTP status of each error type that answers an
// operation Nimbus does not support.
var unsupportedStatus = map[string]int{
	"InvalidParameterValueException": http.StatusBadRequest,
	"ResourceNotFoundException":      http.StatusNotFound,
}

// httpStatus is the status of the answer that err reports (0: none).
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// fillLabels sets the fields of in that path's labels ({FunctionName})
// name: strings to placeholders that name nothing, numbers to 1.
func fillLabels(t *testing.T, in reflect.Value, path string) {
	t.Helper()
	for _, m := range labelRE.FindAllStringSubmatch(path, -1) {
		f := in.FieldByName(m[1])
		if !f.IsValid() || f.Kind() != reflect.Pointer {
			t.Fatalf("the input has no pointer field %s for the path's label", m[1])
		}
		v := reflect.New(f.Type().Elem())
		switch v.Elem().Kind() {
		case reflect.String:
			v.Elem().SetString("apidoc-no-such-" + strings.ToLower(m[1]))
		case reflect.Int32, reflect.Int64:
			v.Elem().SetInt(1)
		default:
			t.Fatalf("label %s of kind %s", m[1], v.Elem().Kind())
		}
		f.Set(v)
	}
}

// matchesRequest reports whether req is row's method and path, the path's
// labels matching any one segment and row's query, if any, included in
// req's.
func matchesRequest(row docRow, req *http.Request) bool {
	path, query, _ := strings.Cut(row.path, "?")
	parts := labelRE.Split(path, -1)
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	re := regexp.MustCompile("^" + strings.Join(parts, "[^/]+") + "$")
	if req.Method != row.method || !re.MatchString(req.URL.EscapedPath()) {
		return false
	}
	want, err := url.ParseQuery(query)
	if err != nil {
		return false
	}
	got := req.URL.Query()
	for k, vs := range want {
		for _, v := range vs {
			if !slices.Contains(got[k], v) {
				return false
			}
		}
	}
	return true
}

// recordingClient sends requests, keeping the last.
type recordingClient struct{ req *http.Request }

func (r *recordingClient) Do(req *http.Request) (*http.Response, error) {
	r.req = req
	return http.DefaultClient.Do(req)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
