package destination

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	region  = "us-east-1"
	account = "123456789012"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Target
	}{
		{"my-function", Target{Function, "my-function"}},
		{"F_1", Target{Function, "F_1"}},
		{"arn:aws:lambda:us-east-1:123456789012:function:my-function", Target{Function, "my-function"}},
		{"arn:aws:lambda:us-east-1:123456789012:function:my-function:$LATEST", Target{Function, "my-function"}},
		{"https://example.com/hook?token=abc", Target{Webhook, "https://example.com/hook?token=abc"}},
		{"http://127.0.0.1:8080/", Target{Webhook, "http://127.0.0.1:8080/"}},
		{"https://user:pw@example.com/x", Target{Webhook, "https://user:pw@example.com/x"}},
		{"nats:orders.done", Target{NATS, "orders.done"}},
		{"NATS:results", Target{NATS, "results"}},
		{"nats:a-b_c.1", Target{NATS, "a-b_c.1"}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in, region, account)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseAnyRegion(t *testing.T) {
	got, err := Parse("arn:aws:lambda:eu-west-3:999999999999:function:f", "", "")
	if err != nil || got != (Target{Function, "f"}) {
		t.Errorf("Parse with no region/account = %+v, %v; want function f", got, err)
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		in, want string // want: in the message
	}{
		{"", "empty"},
		{strings.Repeat("a", MaxLength+1), "characters long"},
		{"my function", "space"},
		{"f\x00", "control"},
		{strings.Repeat("a", 65), "not a function name"},
		{"bad!name", "not a function name"},
		{"arn:aws:sqs:us-east-1:123456789012:queue", "cannot deliver to sqs"},
		{"arn:aws:sns:us-east-1:123456789012:topic", "cannot deliver to sns"},
		{"arn:aws:lambda:us-east-1:123456789012:layer:x", "not a Lambda function ARN"},
		{"arn:aws:lambda:us-east-1:12345:function:f", "not a Lambda function ARN"},
		{"arn:aws:lambda:eu-west-1:123456789012:function:f", "region eu-west-1"},
		{"arn:aws:lambda:us-east-1:999999999999:function:f", "account 999999999999"},
		{"arn:aws:lambda:us-east-1:123456789012:function:f:prod", "$LATEST"},
		{"arn:aws:lambda:us-east-1:123456789012:function:f:", "$LATEST"},
		{"arn:aws:lambda:us-east-1:123456789012:function:", "function name"},
		{"arn:aws:lambda:us-east-1:123456789012:function:b@d", "function name"},
		{"ftp://example.com/x", "not a function name"},
		{"https://", "no host"},
		{"http:///path", "no host"},
		{"https://example.com:99999999999/x", "port"},
		{"https://example.com:0/x", "port"},
		{"https://example.com:x/", "not a valid URL"},
		{"https://exa mple.com", "space"},
		{"https://example.com/x#frag", "fragment"},
		{"nats:", "empty"},
		{"nats:orders.*", "wildcards"},
		{"nats:orders.>", "wildcards"},
		{"nats:a..b", "empty token"},
		{"nats:.a", "empty token"},
		{"nats:a.", "empty token"},
		{"nats:$JS.API.STREAM.DELETE.x", "belong to the NATS server"},
		{"nats:$KV.functions.f", "belong to the NATS server"},
		{"nats:_INBOX.abc", "belong to the NATS server"},
		{"nats:a b", "space"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in, region, account)
		if !errors.Is(err, nimbus.ErrInvalid) {
			t.Errorf("Parse(%.40q) error = %v, want nimbus.ErrInvalid", tt.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%.40q) error %q does not mention %q", tt.in, err, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"f", "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST", "https://h/p?q=1",
		"nats:a.b", "nats:a.*", "arn:aws:sqs:x", "http://[::1]:80/", "", "nats:$x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Parse(in, region, account)
		if err != nil {
			if !errors.Is(err, nimbus.ErrInvalid) {
				t.Fatalf("Parse(%q): error %v is not nimbus.ErrInvalid", in, err)
			}
			return
		}
		switch got.Kind {
		case Function, Webhook, NATS:
		default:
			t.Fatalf("Parse(%q) = kind %q", in, got.Kind)
		}
		again, err := Parse(got.String(), region, account)
		if err != nil || again != got {
			t.Fatalf("Parse(%q) = %+v, but Parse(%q) = %+v, %v", in, got, got.String(), again, err)
		}
	})
}
