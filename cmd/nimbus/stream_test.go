package main

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/nimbus-serverless/nimbus/internal/records"
)

// TestInvokeStreamRecorded: against a real `nimbus serve` with
// authentication on, InvokeWithResponseStream answers an invoker key with
// the event stream (a developer key for other functions is refused), and
// each call is recorded and metered like an Invoke (trigger api, its
// status).
func TestInvokeStreamRecorded(t *testing.T) {
	s := startServer(t, dataDir(t))
	create(t, s.client(), "streamed", "def handler(e, c):\n    if e.get('fail'):\n        raise ValueError('asked to')\n    return {'ok': True}\n")
	inv := createKey(t, s, "inv", "invoker", "*")
	c := clientAs(s, aws.Credentials{AccessKeyID: inv.AccessKeyId, SecretAccessKey: inv.SecretAccessKey})
	dev := createKey(t, s, "dev", "developer", "team-a-*")
	_, err := clientAs(s, aws.Credentials{AccessKeyID: dev.AccessKeyId, SecretAccessKey: dev.SecretAccessKey}).InvokeWithResponseStream(
		t.Context(), &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("streamed")})
	if code := apiErrorCode(err); code != "AccessDeniedException" {
		t.Errorf("a developer key of team-a-*: %v, want AccessDeniedException", err)
	}
	want := map[string]string{} // request id -> status
	for _, payload := range []string{`{}`, `{"fail": true}`} {
		out, err := c.InvokeWithResponseStream(t.Context(), &lambda.InvokeWithResponseStreamInput{
			FunctionName: aws.String("streamed"), Payload: []byte(payload)})
		if err != nil {
			t.Fatalf("InvokeWithResponseStream %s: %v", payload, err)
		}
		var body string
		var done *types.InvokeWithResponseStreamCompleteEvent
		for ev := range out.GetStream().Events() {
			switch v := ev.(type) {
			case *types.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
				body += string(v.Value.Payload)
			case *types.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
				done = &v.Value
			}
		}
		_ = out.GetStream().Close()
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		switch {
		case done == nil:
			t.Fatalf("%s: no InvokeComplete", payload)
		case payload == `{}` && (body != `{"ok": true}` || done.ErrorCode != nil):
			t.Errorf("%s: body %q, ErrorCode %q", payload, body, aws.ToString(done.ErrorCode))
		case payload != `{}` && aws.ToString(done.ErrorCode) != "ValueError":
			t.Errorf("%s: ErrorCode %q", payload, aws.ToString(done.ErrorCode))
		}
		want[id] = map[bool]string{true: records.StatusSuccess, false: records.StatusFunctionError}[payload == `{}`]
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, stderr, err := nimbusCLI(t, s, "invocations", "streamed", "-o", "json")
		if err != nil {
			t.Fatalf("nimbus invocations: %v\n%s", err, stderr)
		}
		var recs []records.Record
		if err := json.Unmarshal([]byte(out), &recs); err != nil {
			t.Fatalf("invocations -o json: %v\n%s", err, out)
		}
		found := 0
		for _, r := range recs {
			if st, ok := want[r.RequestID]; ok && r.Status == st && r.Trigger == "api" && r.BilledDuration > 0 {
				found++
			}
		}
		if found == len(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("records %+v, want %v (request id: status), trigger api, billed", recs, want)
		}
	}
}

// apiErrorCode is the Lambda error code of err ("" if none).
func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
