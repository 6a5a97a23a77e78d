// Command noop is the benchmarks' Go function, built with aws-lambda-go. It
// answers its event at once, or after sleep_ms milliseconds. Run as
// "bootstrap -exit" it exits before starting the runtime client: the
// cold-start baseline, the cost of exec'ing the binary. Run as
// "bootstrap -echo ADDR" it is a plain net/http echo server on ADDR: the
// warm-invoke baseline in a process of its own, as the function is.
package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	SleepMS int `json:"sleep_ms"`
}

// handle answers an event object with itself (after sleep_ms), and any
// other JSON (a trigger's batch of CloudEvents) with {}.
func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var e event
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &e) != nil {
		return struct{}{}, nil
	}
	if e.SleepMS > 0 {
		time.Sleep(time.Duration(e.SleepMS) * time.Millisecond)
	}
	return e, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-exit" {
		return
	}
	if len(os.Args) > 2 && os.Args[1] == "-echo" {
		_ = http.ListenAndServe(os.Args[2], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			_, _ = w.Write(body)
		}))
		return
	}
	lambda.Start(handle)
}
